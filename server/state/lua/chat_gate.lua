-- Admit one viewer chat message against the room's slow mode and its room-wide rate.
-- Slow mode (policy slow_mode_s > 0): one message per viewer every N seconds. The
-- room-wide rate: a token bucket (rate per second, burst one second's worth) shared
-- by every process. A refused message uses up neither allowance.
-- KEYS[1] room policy hash, KEYS[2] room chat bucket hash, KEYS[3] the viewer's
-- slow-mode key
-- ARGV[1] room messages per second (0: no room-wide cap)
-- Returns {'ok'} | {'slow_mode', ms to wait, slow_mode_s} | {'busy', ms to wait}
local slow = tonumber(redis.call('HGET', KEYS[1], 'slow_mode_s') or '0')
if slow > 0 then
  local wait = redis.call('PTTL', KEYS[3])
  if wait > 0 then return {'slow_mode', wait, slow} end
end
local rate = tonumber(ARGV[1])
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local burst = math.max(1, rate)
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens = burst
  if b[1] then
    tokens = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate / 1000)
  end
  if tokens < 1 then
    return {'busy', math.ceil((1 - tokens) * 1000 / rate)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
  -- Forgotten once it would be full again anyway.
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)
end
if slow > 0 then redis.call('SET', KEYS[3], '1', 'PX', slow * 1000) end
return {'ok'}
