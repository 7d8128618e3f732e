-- Reads a channel's position and, optionally, publications.
--
-- KEYS[1] the channel's stream, KEYS[2] its meta hash
-- ARGV[1] since offset, ARGV[2] since epoch ("": no since), ARGV[3] limit
-- (-1: all, 0: none), ARGV[4] a fresh epoch for a channel without one,
-- ARGV[5] how long (ms) the epoch of a channel without history is kept,
-- ARGV[6] "1": newest first (with since: those below it)
-- Returns {top, epoch, entries}.
local meta = redis.call("hmget", KEYS[2], "e", "s")
local epoch, top = meta[1], tonumber(meta[2] or "0")
if epoch == false or (top > 0 and redis.call("exists", KEYS[1]) == 0) then
  -- First read of a channel, or history lost: the epoch that the first
  -- publication will keep, stable for every process that reads it.
  epoch = ARGV[4]
  top = 0
  redis.call("del", KEYS[1])
  redis.call("hset", KEYS[2], "e", epoch, "s", 0)
  redis.call("pexpire", KEYS[2], ARGV[5])
end
local entries = {}
local limit = tonumber(ARGV[3])
if limit ~= 0 and top > 0 and (ARGV[2] == "" or ARGV[2] == epoch) then
  local count = {}
  if limit > 0 then
    count = {"COUNT", limit}
  end
  if ARGV[6] == "1" then
    local from = "+"
    if ARGV[2] ~= "" then
      from = "(" .. ARGV[1] .. "-0"
    end
    if from ~= "(0-0" then
      entries = redis.call("xrevrange", KEYS[1], from, "-", unpack(count))
    end
  else
    local from = "-"
    if ARGV[2] ~= "" then
      from = "(" .. ARGV[1] .. "-0"
    end
    entries = redis.call("xrange", KEYS[1], from, "+", unpack(count))
  end
end
return {top, epoch, entries}
