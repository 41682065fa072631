-- Viewers in a room now, ever, and at the peak; raises the stored peak and the
-- minute's peak (the post-show report's viewers over time).
-- KEYS[1] presence hash, KEYS[2] unique viewers set, KEYS[3] peak counter, KEYS[4] each
-- minute's peak (zset minute -> viewers)
-- ARGV[1] the minute (ms / 60000)
local now = redis.call('HLEN', KEYS[1])
redis.call('ZADD', KEYS[4], 'GT', now, ARGV[1])
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
if now > peak then
  peak = now
  redis.call('SET', KEYS[3], peak)
end
return {now, redis.call('SCARD', KEYS[2]), peak}
