-- Close an open poll; only one caller wins (the host's close or its due job).
-- KEYS[1] poll hash
-- ARGV[1] the closing time (ms)
-- Returns 1 for the caller that closed it, 0 when it was not open
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'closed', 'closed_at', ARGV[1])
return 1
