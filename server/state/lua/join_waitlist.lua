-- Put a viewer on a product's waitlist, or tell them their place when they are on it.
-- Only a product with nothing left to buy has one (or one others already wait for).
-- KEYS[1] the product's waitlist zset, KEYS[2] ticket counter, KEYS[3] product stock hash,
-- KEYS[4] the room's epoch (absent: Redis is being rebuilt), KEYS[5] room policy hash,
-- KEYS[6] the room's products hash
-- ARGV[1] viewer, ARGV[2] product id, ARGV[3] most viewers waiting for one product,
-- ARGV[4] '1' when the viewer's identity is shop-signed
-- Returns {'rebuilding'} | {'refused', code} | {'ok', position, waiting, ticket}
if redis.call('EXISTS', KEYS[4]) == 0 then return {'rebuilding'} end
if redis.call('HEXISTS', KEYS[6], ARGV[2]) == 0 then return {'refused', 'product_not_found'} end
if redis.call('HGET', KEYS[5], 'require_verified') == '1' and ARGV[4] ~= '1' then
  return {'refused', 'signed_identity_required'}
end
local ticket = redis.call('ZSCORE', KEYS[1], ARGV[1])
local waiting = redis.call('ZCARD', KEYS[1])
if not ticket then
  if waiting == 0 and tonumber(redis.call('HGET', KEYS[3], 'left') or '0') > 0 then
    return {'refused', 'not_sold_out'}
  end
  if waiting >= tonumber(ARGV[3]) then return {'refused', 'waitlist_full'} end
  ticket = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], ticket, ARGV[1])
  waiting = waiting + 1
end
return {'ok', redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, waiting, tostring(ticket)}
