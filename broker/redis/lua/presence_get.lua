-- Drops a channel's expired presence entries and returns the others.
--
-- KEYS[1] the hash, KEYS[2] the expiry set
-- Returns the hash's fields and values.
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call("zrangebyscore", KEYS[2], "-inf", now)
if #expired > 0 then
  redis.call("zremrangebyscore", KEYS[2], "-inf", now)
  for i = 1, #expired, 500 do
    redis.call("hdel", KEYS[1], unpack(expired, i, math.min(i + 499, #expired)))
  end
end
return redis.call("hgetall", KEYS[1])
