-- Adds or refreshes clients in a channel's presence: a hash of client ID
-- to info and a sorted set of client ID by expiry time (Redis's clock).
--
-- KEYS[1] the hash, KEYS[2] the expiry set
-- ARGV[1] expiry in ms ("0": never), then pairs of client ID, info
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local score = "+inf"
if ttl > 0 then
  score = now + ttl
end
for i = 2, #ARGV, 2 do
  redis.call("hset", KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call("zadd", KEYS[2], score, ARGV[i])
end
-- The keys live as long as their longest-lived entry.
local last = redis.call("zrange", KEYS[2], -1, -1, "WITHSCORES")
if last[2] == "inf" then
  redis.call("persist", KEYS[1])
  redis.call("persist", KEYS[2])
else
  local left = tonumber(last[2]) - now
  redis.call("pexpire", KEYS[1], left)
  redis.call("pexpire", KEYS[2], left)
end
return 1
