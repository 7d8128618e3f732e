-- Removes a client from a channel's presence.
--
-- KEYS[1] the hash, KEYS[2] the expiry set; ARGV[1] the client ID
redis.call("hdel", KEYS[1], ARGV[1])
redis.call("zrem", KEYS[2], ARGV[1])
return 1
