-- One connection of a viewer to a room closed: count it, and when it was their last,
-- take them off the present hash and note when they left (a waitlist keeps their place
-- for a while), in one step, so a connection opened meanwhile is never lost.
-- Entries older than keep_place_ms are trimmed here, so `gone` stays small.
-- KEYS[1] presence hash (viewer -> open connections), KEYS[2] gone zset (viewer -> ms)
-- ARGV[1] viewer, ARGV[2] ms a viewer who left keeps their place
-- Returns the viewer's open connections now
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n > 0 then return n end
redis.call('HDEL', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[2])))
return 0
