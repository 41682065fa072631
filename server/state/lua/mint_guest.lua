-- Count one new guest identity for a client address: at most ARGV[1] in any
-- sliding window of ARGV[2] ms. The zset holds the mint times and expires with the
-- window, so a quiet address costs nothing.
-- KEYS[1] the address's recent mints (zset member -> ms)
-- ARGV[1] limit, ARGV[2] window ms, ARGV[3] a unique member for this mint
-- Returns {1, 0} when admitted | {0, ms until the next one is admitted}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
