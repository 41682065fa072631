-- Put a room back on the pulse's schedule at the time its earliest item is due,
-- or take it off when it has none. Atomic with the writers, which add an item
-- and then lower the room's entry (ZADD LT), so no item is ever left unscheduled.
-- KEYS[1..n-1] the room's item zsets (scored in ms), KEYS[n] the schedule zset
-- ARGV[1] room id; then per item zset i: ARGV[2i] ms added to its earliest score,
-- ARGV[2i+1] the earliest time (ms) it may be due again (0: any)
-- Returns the room's new due time in ms, or false when it has nothing due.
local best = nil
for i = 1, #KEYS - 1 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local at = math.max(tonumber(first[2]) + tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1]))
    if best == nil or at < best then best = at end
  end
end
if best == nil then
  redis.call('ZREM', KEYS[#KEYS], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[#KEYS], best, ARGV[1])
return best
