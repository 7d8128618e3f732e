"""The /live WebSocket: the subset of Switchyard's protocol the benchmark
speaks (docs/protocol.md), on Channels groups."""

import json
import re
import uuid

from channels.generic.websocket import AsyncWebsocketConsumer

# Channels group names: ASCII letters, digits, "-", "_", "." and under 100.
GROUP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,99}$")


def dumps(obj):
    # Compact, like Switchyard's frames (the benchmark looks for
    # '"response_status":200' and '"t":').
    return json.dumps(obj, separators=(",", ":"))


class LiveConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.joined = set()
        await self.accept()
        await self.send(
            text_data=dumps(
                {
                    "stream": "$session",
                    "payload": {"action": "connected", "client_id": uuid.uuid4().hex, "user": ""},
                }
            )
        )

    async def disconnect(self, code):
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined.clear()

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data if text_data is not None else bytes_data)
            stream = frame["stream"]
            payload = frame["payload"]
            action = payload["action"]
            request_id = payload.get("request_id")
        except (ValueError, TypeError, KeyError):
            await self.send(text_data=dumps({"stream": "$session", "payload": {"errors": ["malformed frame"], "data": None, "action": "", "response_status": 400, "request_id": None}}))
            return
        if stream != "$channels" or action not in ("subscribe", "unsubscribe"):
            await self.reply(stream, action, request_id, 404, error=f"unknown {stream} action {action!r}")
            return
        channel = payload.get("channel")
        if not isinstance(channel, str) or not GROUP_NAME.match(channel):
            await self.reply(stream, action, request_id, 400, error="channel: want 1-99 of A-Z a-z 0-9 _ . -")
            return
        if action == "subscribe":
            await self.channel_layer.group_add(channel, self.channel_name)
            self.joined.add(channel)
            data = {"channel": channel, "offset": 0, "epoch": "", "recovered": False, "publications": []}
        else:
            await self.channel_layer.group_discard(channel, self.channel_name)
            self.joined.discard(channel)
            data = {"channel": channel}
        await self.reply(stream, action, request_id, 200, data=data)

    async def reply(self, stream, action, request_id, status, data=None, error=None):
        await self.send(
            text_data=dumps(
                {
                    "stream": stream,
                    "payload": {
                        "errors": [error] if error else [],
                        "data": data,
                        "action": action,
                        "response_status": status,
                        "request_id": request_id,
                    },
                }
            )
        )

    # group_send(..., {"type": "live.message", ...}) lands here.
    async def live_message(self, event):
        await self.send(
            text_data=dumps(
                {
                    "stream": "$channels",
                    "payload": {"action": "message", "channel": event["channel"], "data": event["data"]},
                }
            )
        )
