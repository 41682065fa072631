-- Reserve units of a product for one buyer: the whole offer / stock / limit decision in
-- one atomic step. The offer is the product's current flash sale while it is open;
-- outside it (none, not started, ended or stopped) the product's listing
-- (buy-it-now at the list price) when the host has it open.
-- KEYS[1] request-id answer (set only when units are reserved), KEYS[2] product's
-- current sale id, KEYS[3] sale hash,
-- KEYS[4] product stock hash, KEYS[5] per-buyer units of the sale, KEYS[6] hold hash,
-- KEYS[7] expiring-holds zset, KEYS[8] the room's epoch (absent: Redis is being rebuilt),
-- KEYS[9] room policy hash, KEYS[10] open holds per viewer (room-wide),
-- KEYS[11] units per client address of the sale (counted when policy limit_per_ip is on),
-- KEYS[12] the product's listing hash, KEYS[13] per-buyer units of the listing,
-- KEYS[14] units per client address of the listing, KEYS[15] the product's waitlist
-- ARGV[1] sale id the caller believes is current ('' for none), ARGV[2] buyer,
-- ARGV[3] quantity, ARGV[4] new hold id, ARGV[5] hold lifetime ms, ARGV[6] answer TTL s,
-- ARGV[7] product id, ARGV[8] '1' when the buyer's identity is shop-signed,
-- ARGV[9] buyer's client address ('' when unknown), ARGV[10] most open holds per viewer,
-- ARGV[11] the product's listing id
-- Returns {'dup', answer} | {'stale'} | {'rebuilding'} | {'refused', answer} | {'ok', answer}
-- The offer rule is lib/offer.lua's, shared with the waitlist's scripts.
-- #include offer
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[8]) then return {'rebuilding'} end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return {'stale'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A refusal changed nothing and is cheap to decide again: it is not remembered, so
-- refused requests cost no memory (a retry is evaluated afresh; docs/protocol.md §8).
local function refuse(code)
  return {'refused', cjson.encode({error = code})}
end
local policy = redis.call('HMGET', KEYS[9], 'require_verified', 'limit_per_ip')
if policy[1] == '1' and ARGV[8] ~= '1' then return refuse('signed_identity_required') end
local kind, s, cap, closed = offer_of(ARGV[1], KEYS[3], KEYS[12], now)
if closed == 'missing' then return {'stale'} end
if not kind then return refuse(closed) end
local offer, sale_key, bought_key, ip_key = ARGV[1], KEYS[3], KEYS[5], KEYS[11]
if kind == 'listing' then
  -- No flash sale is open: the listing sells from the product's stock.
  offer, sale_key, bought_key, ip_key = ARGV[11], KEYS[12], KEYS[13], KEYS[14]
end
local qty = tonumber(ARGV[3])
local avail = tonumber(redis.call('HGET', KEYS[4], 'left') or '0')
if cap and cap < avail then avail = cap end
if avail <= 0 then return refuse('sold_out') end
if avail < qty then return refuse('insufficient_stock') end
-- Units in stock while viewers wait for them are theirs (promote.lua hands them out).
if redis.call('ZCARD', KEYS[15]) > 0 then return refuse('waitlist_ahead') end
local mine = tonumber(redis.call('HGET', bought_key, ARGV[2]) or '0')
if mine + qty > tonumber(s[7]) then return refuse('limit_reached') end
-- The per-address count is kept only for holds taken while the policy asks for it;
-- such a hold records its address, so its release gives back exactly what it took.
local by_ip = policy[2] == '1' and ARGV[9] ~= ''
if by_ip then
  local ours = tonumber(redis.call('HGET', ip_key, ARGV[9]) or '0')
  if ours + qty > tonumber(s[7]) then return refuse('ip_limit_reached') end
end
if tonumber(redis.call('HGET', KEYS[10], ARGV[2]) or '0') >= tonumber(ARGV[10]) then
  return refuse('too_many_holds')
end
redis.call('HINCRBY', KEYS[10], ARGV[2], 1)
if by_ip then redis.call('HINCRBY', ip_key, ARGV[9], qty) end
redis.call('HINCRBY', KEYS[4], 'left', -qty)
redis.call('HINCRBY', KEYS[4], 'held', qty)
redis.call('HINCRBY', sale_key, 'held', qty)
redis.call('HINCRBY', bought_key, ARGV[2], qty)
local expires = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[6], 'id', ARGV[4], 'buyer', ARGV[2], 'product_id', ARGV[7],
  'sale_id', offer, 'quantity', qty, 'unit_price', s[8], 'currency', s[9],
  'created_at', now, 'expires_at', expires, 'state', 'held')
if by_ip then redis.call('HSET', KEYS[6], 'ip', ARGV[9]) end
redis.call('ZADD', KEYS[7], expires, ARGV[4])
local answer = cjson.encode({hold = {id = ARGV[4], product_id = ARGV[7], sale_id = offer,
  quantity = qty, unit_price = tonumber(s[8]), currency = s[9], created_at = now,
  expires_at = expires}})
redis.call('SET', KEYS[1], answer, 'EX', ARGV[6])
return {'ok', answer}
