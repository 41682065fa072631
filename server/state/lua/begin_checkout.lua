-- Take a held reservation into checkout: it can no longer expire, and the coupon the
-- buyer applies (if any) is reserved for it. The order is then written to the store.
-- KEYS[1] request-id answer, KEYS[2] hold hash, KEYS[3] expiring-holds zset,
-- KEYS[4] coupon drop hash, KEYS[5] coupon claims hash (both unused without a coupon),
-- KEYS[6] zset of holds in checkout (for crash recovery), KEYS[7] the room's epoch
-- (absent: Redis is being rebuilt), KEYS[8] room policy hash
-- ARGV[1] hold id, ARGV[2] buyer, ARGV[3] coupon id or '', ARGV[4] '1' when the buyer's
-- identity is shop-signed
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', code}
--   | {'ok'|'confirming'|'confirmed', hold json, epoch}
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
local epoch = room_epoch(KEYS[7])
if not epoch then return {'rebuilding'} end
if ARGV[4] ~= '1' and redis.call('HGET', KEYS[8], 'require_verified') == '1' then
  return {'refused', 'signed_identity_required'}
end
local h = redis.call('HMGET', KEYS[2], 'state', 'buyer', 'product_id', 'sale_id', 'quantity',
  'unit_price', 'currency', 'expires_at', 'coupon_id', 'discount', 'order_id', 'created_at')
if not h[1] or h[2] ~= ARGV[2] then return {'refused', 'hold_not_found'} end
local function hold_json()
  return cjson.encode({id = ARGV[1], buyer = h[2], product_id = h[3], sale_id = h[4],
    quantity = tonumber(h[5]), unit_price = tonumber(h[6]), currency = h[7],
    expires_at = tonumber(h[8]), coupon_id = h[9] or '', discount = tonumber(h[10] or '0'),
    created_at = tonumber(h[12])})
end
if h[1] == 'confirmed' then return {'confirmed', hold_json(), epoch} end
if h[1] == 'confirming' then return {'confirming', hold_json(), epoch} end
if h[1] == 'expired' then return {'refused', 'hold_expired'} end
if h[1] == 'released' then return {'refused', 'hold_released'} end
if h[1] == 'voided' then return {'refused', 'sale_stopped'} end
if h[1] == 'aborted' then return {'refused', 'checkout_cancelled'} end
-- A group buy's hold waits for its group to fill (server/features/group_buys.py).
if h[1] == 'pending' then return {'refused', 'group_not_full'} end
if h[1] ~= 'held' then return {'refused', 'hold_not_found'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(h[8]) then return {'refused', 'hold_expired'} end
if ARGV[3] ~= '' then
  local c = redis.call('HMGET', KEYS[4], 'kind', 'value', 'min_spend', 'expires_at', 'currency')
  if not c[1] then return {'refused', 'coupon_not_found'} end
  local claim = redis.call('HGET', KEYS[5], ARGV[2])
  if not claim then return {'refused', 'coupon_not_claimed'} end
  if claim ~= 'claimed' then return {'refused', 'coupon_used'} end
  if now >= tonumber(c[4]) then return {'refused', 'coupon_expired'} end
  -- Minimum spend and amounts are in the coupon's currency: it must be the order's.
  if c[5] ~= h[7] then return {'refused', 'coupon_currency'} end
  local subtotal = tonumber(h[6]) * tonumber(h[5])
  if subtotal < tonumber(c[3]) then return {'refused', 'coupon_min_spend'} end
  local discount
  if c[1] == 'amount' then
    discount = math.min(tonumber(c[2]), subtotal)
  else
    discount = math.floor(subtotal * tonumber(c[2]) / 100)
  end
  redis.call('HSET', KEYS[5], ARGV[2], 'reserved:' .. ARGV[1])
  redis.call('HSET', KEYS[2], 'coupon_id', ARGV[3], 'discount', discount)
  h[9] = ARGV[3]
  h[10] = tostring(discount)
end
redis.call('HSET', KEYS[2], 'state', 'confirming')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[6], now, ARGV[1])
return {'ok', hold_json(), epoch}
