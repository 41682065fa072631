-- Append one event to a room's log and publish it, under the room's next sequence number.
-- KEYS[1] seq counter, KEYS[2] capped event log (list, oldest first)
-- ARGV[1] encoded event object '{...}' (at least one field), ARGV[2] log size, ARGV[3] channel
local seq = redis.call('INCR', KEYS[1])
local event = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[2], event)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[3], event)
return seq
