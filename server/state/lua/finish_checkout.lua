-- After the order is durable in the store: move the hold's units from held to sold,
-- consume the coupon, and remember the answer for retries.
-- KEYS[1] hold hash, KEYS[2] product stock hash, KEYS[3] sale hash,
-- KEYS[4] coupon claims hash (unused without a coupon), KEYS[5] request-id answer,
-- KEYS[6] zset of holds in checkout, KEYS[7] open holds per viewer (the hold closes;
-- its units stay counted against the buyer and the address, like a sale's),
-- KEYS[8] expiring-holds zset
-- ARGV[1] order id, ARGV[2] answer json, ARGV[3] answer TTL s, ARGV[4] ms to keep the hold,
-- ARGV[5] hold id, ARGV[6] the order's coupon id ('' without)
-- Returns {'ok'} | {'already'} | {'missing'} | {'bad_state', state}
local h = redis.call('HMGET', KEYS[1], 'state', 'quantity', 'buyer')
if not h[1] then return {'missing'} end
if h[1] == 'confirmed' then
  redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[3])
  return {'already'}
end
-- 'held': a redis-server that restarted from its append-only file lost the write that
-- took the hold into checkout (a write it postponed behind a slow disk). The order is in
-- the store, which decides: its units are sold all the same, and the hold, still on the
-- expiring list, is taken off it, so its expiry cannot hand the units back to stock.
if h[1] ~= 'confirming' and h[1] ~= 'held' then return {'bad_state', h[1]} end
local qty = tonumber(h[2])
redis.call('HINCRBY', KEYS[2], 'held', -qty)
redis.call('HINCRBY', KEYS[2], 'sold', qty)
redis.call('HINCRBY', KEYS[3], 'held', -qty)
redis.call('HINCRBY', KEYS[3], 'sold', qty)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], h[3], 'used:' .. ARGV[1])
end
if redis.call('HINCRBY', KEYS[7], h[3], -1) <= 0 then redis.call('HDEL', KEYS[7], h[3]) end
redis.call('HSET', KEYS[1], 'state', 'confirmed', 'order_id', ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[5])
redis.call('ZREM', KEYS[8], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[3])
return {'ok'}
