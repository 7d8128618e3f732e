"""POST /api/server/publish: Switchyard's server API publish, on
channel_layer.group_send. The key comes from PEER_API_KEY."""

import hmac
import json
import os

from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse

from project.consumers import GROUP_NAME

API_KEY = os.environ.get("PEER_API_KEY", "")


async def publish(request):
    if request.method != "POST":
        return JsonResponse({"error": "method not allowed"}, status=405)
    auth = request.headers.get("Authorization", "")
    if not API_KEY or not hmac.compare_digest(auth.encode(), ("apikey " + API_KEY).encode()):
        return JsonResponse({"error": "unauthorized"}, status=401)
    try:
        body = json.loads(request.body)
        channel = body["channel"]
        data = body["data"]
    except (ValueError, TypeError, KeyError):
        return JsonResponse({"error": "want {\"channel\": C, \"data\": D}"}, status=400)
    if not isinstance(channel, str) or not GROUP_NAME.match(channel):
        return JsonResponse({"error": "channel: want 1-99 of A-Z a-z 0-9 _ . -"}, status=400)
    await get_channel_layer().group_send(channel, {"type": "live.message", "channel": channel, "data": data})
    return JsonResponse({})


async def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")
