-- Append one event to a room's log and publish it, under the room's next sequence number.
-- Nothing is published while the room is being rebuilt (its epoch key is absent): a
-- number taken then would restart from 1 in the emptied Redis, and counters read then
-- would be zeros. Viewers get a snapshot once the room is whole again.
-- A chat message is also kept, in the same step, in the room's capped chat history (the
-- snapshot's recent chat).
-- KEYS[1] seq counter, KEYS[2] capped event log (list, oldest first), KEYS[3] the room's
-- epoch, KEYS[4] the room's chat history (list, oldest first)
-- ARGV[1] encoded event object '{...}' (at least one field), ARGV[2] log size, ARGV[3] channel,
-- ARGV[4] chat history size to keep the event in (0: not kept), ARGV[5] 'PUBLISH', or
-- 'SPUBLISH' on a Redis Cluster (sharded pub/sub: the message goes to the room's shard
-- only, whose slot the channel's hash tag names, not to every node)
-- Returns the event's seq, or -1 when the room is being rebuilt
-- #include epoch
if not room_epoch(KEYS[3]) then return -1 end
local seq = redis.call('INCR', KEYS[1])
local event = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[2], event)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('RPUSH', KEYS[4], event)
  redis.call('LTRIM', KEYS[4], -keep, -1)
end
redis.call(ARGV[5] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[3], event)
return seq
