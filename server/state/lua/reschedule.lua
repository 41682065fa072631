-- When a room's earliest item is due: its earliest timer, expiring hold or checkout due
-- for recovery. Reads only the room's keys (one hash slot on a Redis Cluster): the
-- caller takes the room off the global schedule first and puts it back at this time
-- after (ZADD LT), so an item a writer adds meanwhile is never left unscheduled
-- (server/state/schedule.py).
-- KEYS[1..n] the room's item zsets (scored in ms)
-- ARGV[2i-1] ms added to item zset i's earliest score, ARGV[2i] the earliest time (ms) it
-- may be due again (0: any)
-- Returns the room's due time in ms, or false when it has nothing due.
local best = nil
for i = 1, #KEYS do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local at = math.max(tonumber(first[2]) + tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]))
    if best == nil or at < best then best = at end
  end
end
if best == nil then return false end
return best
