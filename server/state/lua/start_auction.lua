-- Start an auction: take one unit of the product out of stock for it (it shows as
-- held), make its hash, its winner's sale-like hash and its close timer, in one step.
-- KEYS[1] auction hash, KEYS[2] product stock hash, KEYS[3] the winner's sale-like hash,
-- KEYS[4] the product's open auction id, KEYS[5] the room's auction ids, KEYS[6] timers
-- zset, KEYS[7] the room's epoch (absent: Redis is being rebuilt)
-- ARGV[1] auction id, ARGV[2] product id, ARGV[3] the terms as JSON, ARGV[4] start price,
-- ARGV[5] increments "from:step,...", ARGV[6] anti-snipe mode, ARGV[7] extension ms,
-- ARGV[8] first end ms, ARGV[9] reserve (0: none), ARGV[10] buy-now price (0: none),
-- ARGV[11] '1' for signed bidders only, ARGV[12] the winner's hold ms, ARGV[13] the
-- pseudonym salt, ARGV[14] genesis hash, ARGV[15] currency, ARGV[16] started at ms,
-- ARGV[17] room key prefix
-- Returns {'ok'} | {'rebuilding'} | {'active', auction id} | {'sold_out'}
-- #include epoch
if not room_epoch(KEYS[7]) then return {'rebuilding'} end
local cur = redis.call('GET', KEYS[4])
if cur and redis.call('HGET', ARGV[17] .. 'auction:' .. cur, 'state') == 'open' then
  return {'active', cur}
end
if tonumber(redis.call('HGET', KEYS[2], 'left') or '0') < 1 then return {'sold_out'} end
redis.call('HINCRBY', KEYS[2], 'left', -1)
redis.call('HINCRBY', KEYS[2], 'held', 1)
redis.call('HSET', KEYS[1], 'auction_id', ARGV[1], 'product_id', ARGV[2], 'terms', ARGV[3],
  'start', ARGV[4], 'bands', ARGV[5], 'mode', ARGV[6], 'extend_ms', ARGV[7],
  'ends_at', ARGV[8], 'reserve', ARGV[9], 'buy_now', ARGV[10], 'signed_only', ARGV[11],
  'pay_ms', ARGV[12], 'salt', ARGV[13], 'genesis', ARGV[14], 'head', ARGV[14],
  'currency', ARGV[15], 'state', 'open', 'unit', 'auction', 'bids', 0, 'extensions', 0,
  'leader', '', 'leader_max', 0, 'second', '', 'second_max', 0)
redis.call('HSET', KEYS[3], 'sale_id', 'au_' .. ARGV[1], 'kind', 'auction',
  'product_id', ARGV[2], 'state', 'auction', 'units', 1, 'held', 0, 'sold', 0, 'limit', 1,
  'price', ARGV[4], 'currency', ARGV[15], 'starts_at', ARGV[16],
  'ends_at', 9007199254740991)
redis.call('SET', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[8], 'auction_close:' .. ARGV[1])
return {'ok'}
