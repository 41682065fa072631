-- Put a viewer on a product's waitlist, or tell them their place when they are on it.
-- Only a product a buyer could not get now has one (or one others already wait for):
-- nothing left, by reserve.lua's rule (lua/lib/offer.lua `available`).
-- KEYS[1] the product's waitlist zset, KEYS[2] ticket counter,
-- KEYS[3] the room's epoch (absent: Redis is being rebuilt), KEYS[4] room policy hash,
-- KEYS[5] the room's products hash, KEYS[6] the room's hash (its show state)
-- ARGV[1] viewer, ARGV[2] product id, ARGV[3] most viewers waiting for one product,
-- ARGV[4] '1' when the viewer's identity is shop-signed, ARGV[5] room key prefix
-- Returns {'rebuilding'} | {'refused', code} | {'ok', position, waiting, ticket, available}
-- #include offer
-- #include epoch
if not room_epoch(KEYS[3]) then return {'rebuilding'} end
if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then return {'refused', 'product_not_found'} end
if redis.call('HGET', KEYS[6], 'state') == 'ended' then return {'refused', 'show_ended'} end
if redis.call('HGET', KEYS[4], 'require_verified') == '1' and ARGV[4] ~= '1' then
  return {'refused', 'signed_identity_required'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local avail = available(ARGV[5], ARGV[2], now)
local ticket = redis.call('ZSCORE', KEYS[1], ARGV[1])
local waiting = redis.call('ZCARD', KEYS[1])
if not ticket then
  if waiting == 0 and avail > 0 then return {'refused', 'not_sold_out'} end
  if waiting >= tonumber(ARGV[3]) then return {'refused', 'waitlist_full'} end
  ticket = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], ticket, ARGV[1])
  waiting = waiting + 1
end
return {'ok', redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, waiting, tostring(ticket), avail}
