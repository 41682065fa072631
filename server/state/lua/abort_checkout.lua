-- The order's write failed and nothing of it was committed: put the hold back to
-- 'held' (it may expire again, or be checked out again) and give the buyer the
-- coupon back. Only for a failed write: a hold the store decided as aborted, or
-- that the store fenced, is voided with release.lua ('void') instead.
-- KEYS[1] hold hash, KEYS[2] expiring-holds zset, KEYS[3] coupon claims hash,
-- KEYS[4] zset of holds in checkout
-- ARGV[1] hold id
local h = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'buyer', 'coupon_id')
if h[1] ~= 'confirming' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'held')
redis.call('HDEL', KEYS[1], 'coupon_id', 'discount')
redis.call('ZADD', KEYS[2], h[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if h[4] and h[4] ~= '' and redis.call('HGET', KEYS[3], h[3]) == 'reserved:' .. ARGV[1] then
  redis.call('HSET', KEYS[3], h[3], 'claimed')
end
return 1
