-- Set or clear a product's claim keyword (comment-to-buy) in Redis, in one step: its
-- previous keyword leaves the room's lookup (only if it is still this product's), the
-- new one is added, and the product's listing hash (its card) says the same. Two host
-- changes at once therefore never leave a keyword that buys what no card shows. The
-- order store has decided first that no other product of the room has the keyword.
-- KEYS[1] the room's keyword hash (lower-case keyword -> {product_id, quantities}),
-- KEYS[2] the product's listing hash
-- ARGV[1] product id, ARGV[2] keyword ('' to clear), ARGV[3] '1' when quantities count
-- Returns the number of keywords the room has now
local old = redis.call('HGET', KEYS[2], 'claim_kw')
if old then
  local owner = redis.call('HGET', KEYS[1], string.lower(old))
  if owner and cjson.decode(owner).product_id == ARGV[1] then
    redis.call('HDEL', KEYS[1], string.lower(old))
  end
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[2], 'claim_kw', 'claim_qty')
else
  redis.call('HSET', KEYS[1], string.lower(ARGV[2]),
    cjson.encode({product_id = ARGV[1], quantities = ARGV[3] == '1'}))
  redis.call('HSET', KEYS[2], 'claim_kw', ARGV[2], 'claim_qty', ARGV[3])
end
return redis.call('HLEN', KEYS[1])
