-- A group that did not fill in time, in one step: every member's pending hold ends
-- (expired), the group's N units go back to stock, its members may start or join
-- another group of the deal. 'due' waits for the deadline; 'now' (the host closed the
-- deal, or the show ended) does not.
-- KEYS[1] the deal (sale-like hash), KEYS[2] the group hash, KEYS[3] the group's members
-- (list of viewer:hold), KEYS[4] the deal's members (hash viewer -> group), KEYS[5] the
-- deal's open groups (zset), KEYS[6] product stock hash, KEYS[7] open holds per viewer,
-- KEYS[8] per-buyer units of the deal, KEYS[9] timers zset
-- ARGV[1] group id, ARGV[2] 'due' | 'now', ARGV[3] room key prefix, ARGV[4] ms to keep
-- the ended holds readable
-- Returns {'expired', units back, members...} | {'not_due'} | {'over', state}
local g = redis.call('HMGET', KEYS[2], 'state', 'size', 'deadline')
if not g[1] then return {'over', 'missing'} end
if g[1] ~= 'open' then return {'over', g[1]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == 'due' and now < tonumber(g[3]) then return {'not_due'} end
local size = tonumber(g[2])
local out = {'expired', size}
for _, m in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local viewer, hid = string.match(m, '^(.*):([^:]*)$')
  local hk = ARGV[3] .. 'hold:' .. hid
  redis.call('HSET', hk, 'state', 'expired')
  redis.call('PEXPIRE', hk, ARGV[4])
  if redis.call('HINCRBY', KEYS[7], viewer, -1) <= 0 then redis.call('HDEL', KEYS[7], viewer) end
  if redis.call('HINCRBY', KEYS[8], viewer, -1) <= 0 then redis.call('HDEL', KEYS[8], viewer) end
  redis.call('HDEL', KEYS[4], viewer)
  out[#out + 1] = m
end
redis.call('HINCRBY', KEYS[6], 'left', size)
redis.call('HINCRBY', KEYS[6], 'held', -size)
redis.call('HINCRBY', KEYS[1], 'held', -size)
redis.call('HSET', KEYS[2], 'state', 'expired', 'expired_at', now)
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[9], 'group_expire:' .. ARGV[1])
return out
