-- Award a viewer fan points once under the award's id, within the per-minute cap.
-- KEYS[1] the channel's points (hash viewer -> points), KEYS[2] the award's key,
-- KEYS[3] the viewer's points this minute, KEYS[4] the channel's loaded marker (absent:
-- the store's points are not in Redis yet)
-- ARGV[1] viewer, ARGV[2] points, ARGV[3] cap a minute (0: not capped), ARGV[4] seconds
-- the award's id is remembered
-- Returns {'ok', points given, total} | {'dup', points given then, total} | {'unloaded'}
if redis.call('EXISTS', KEYS[4]) == 0 then return {'unloaded'} end
local seen = redis.call('GET', KEYS[2])
if seen then
  return {'dup', tonumber(seen), tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')}
end
local points = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
if cap > 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  points = math.max(0, math.min(points, cap - used))
  if points > 0 then
    redis.call('INCRBY', KEYS[3], points)
    redis.call('EXPIRE', KEYS[3], 120)
  end
end
-- A capped award is remembered as 0: its retry gets 0 too, even once the minute turned.
redis.call('SET', KEYS[2], points, 'EX', ARGV[4])
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], points)
return {'ok', points, total}
