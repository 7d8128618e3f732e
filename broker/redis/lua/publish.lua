-- Appends a publication to a channel's history and publishes it, in one
-- step: offset increment, XADD with exact MAXLEN, expiry, PUBLISH.
--
-- KEYS[1] the channel's stream, KEYS[2] its meta hash {e: epoch, s: top offset}
-- ARGV[1] the body, ARGV[2] history size, ARGV[3] history TTL in ms ("0": none),
-- ARGV[4] the pub/sub channel, ARGV[5] a fresh epoch, used if history starts or was lost
-- Returns {offset, epoch}.
local meta = redis.call("hmget", KEYS[2], "e", "s")
local epoch, top = meta[1], tonumber(meta[2] or "0")
if epoch == false or (top > 0 and redis.call("exists", KEYS[1]) == 0) then
  -- No history yet, or the publications were lost (expired or evicted
  -- apart from the meta): a new epoch, so no client recovers over the gap.
  epoch = ARGV[5]
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "e", epoch, "s", 0)
end
top = redis.call("hincrby", KEYS[2], "s", 1)
redis.call("xadd", KEYS[1], "MAXLEN", ARGV[2], top .. "-0", "d", ARGV[1])
if ARGV[3] ~= "0" then
  redis.call("pexpire", KEYS[1], ARGV[3])
  redis.call("pexpire", KEYS[2], ARGV[3])
else
  redis.call("persist", KEYS[1])
  redis.call("persist", KEYS[2])
end
redis.call("publish", ARGV[4], "p" .. top .. ":" .. epoch .. ":" .. ARGV[1])
return {top, epoch}
