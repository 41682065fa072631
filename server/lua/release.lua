-- Return a held reservation's units to stock: on expiry (by the server clock) or when
-- the buyer releases it. Only a hold in state 'held' moves, so units return exactly
-- once even when expiry races a checkout (which moves it to 'confirming' first).
-- KEYS[1] hold hash, KEYS[2] product stock hash, KEYS[3] sale hash,
-- KEYS[4] per-buyer units of the sale, KEYS[5] expiring-holds zset
-- ARGV[1] hold id, ARGV[2] 'expire' | 'release', ARGV[3] buyer (for release),
-- ARGV[4] ms to keep the finished hold for late checkouts
-- Returns {'done', qty, product_id} | {'not_due'} | {'missing'} | {state} (its state now)
local h = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'buyer', 'quantity', 'product_id')
if not h[1] then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {'missing'}
end
if ARGV[2] == 'release' and h[3] ~= ARGV[3] then return {'missing'} end
if h[1] ~= 'held' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {h[1]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == 'expire' and now < tonumber(h[2]) then return {'not_due'} end
local qty = tonumber(h[4])
redis.call('HINCRBY', KEYS[2], 'left', qty)
redis.call('HINCRBY', KEYS[2], 'held', -qty)
redis.call('HINCRBY', KEYS[3], 'held', -qty)
redis.call('HINCRBY', KEYS[4], h[3], -qty)
if ARGV[2] == 'expire' then
  redis.call('HSET', KEYS[1], 'state', 'expired')
else
  redis.call('HSET', KEYS[1], 'state', 'released')
end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'done', qty, h[5]}
