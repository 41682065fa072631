-- Viewers in a room now, ever, and at the peak; raises the stored peak.
-- KEYS[1] presence hash, KEYS[2] unique viewers set, KEYS[3] peak counter
local now = redis.call('HLEN', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
if now > peak then
  peak = now
  redis.call('SET', KEYS[3], peak)
end
return {now, redis.call('SCARD', KEYS[2]), peak}
