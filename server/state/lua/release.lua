-- Return a held reservation's units to stock: on expiry, when the buyer releases it,
-- or when checkout recovery or the store's fence voids a checkout. Only a hold in
-- state 'held' (or 'confirming', for 'void') moves, so units return exactly once
-- even when expiry races a checkout (which moves the hold to 'confirming' first).
-- The server clock decides: a release asked for at or after the hold's expiry is an
-- expiry, whether or not the sweep has run yet.
-- KEYS[1] hold hash, KEYS[2] product stock hash, KEYS[3] sale hash,
-- KEYS[4] per-buyer units of the sale, KEYS[5] expiring-holds zset,
-- KEYS[6] zset of holds in checkout, KEYS[7] coupon claims hash (unused without a coupon),
-- KEYS[8] the room's epoch (absent: Redis is being rebuilt, and no unit moves),
-- KEYS[9] open holds per viewer, KEYS[10] units per client address of the sale
-- ARGV[1] hold id, ARGV[2] 'expire' | 'release' | 'void', ARGV[3] buyer (for release),
-- ARGV[4] ms to keep the finished hold for late checkouts; for the waitlist, in the same
-- step: ARGV[5] room key prefix ('ls:{room}:'), ARGV[6] id seed for new holds,
-- ARGV[7] their lifetime ms, ARGV[8] most open holds per viewer, ARGV[9] ms a viewer
-- who left keeps their place
-- Returns {'done', qty, product_id, state now, 1 when the waitlist has more to do,
--   waitlist moves...} | {'not_due'} | {'missing'} | {'rebuilding'} | {state}
-- The units returned go to the head of the product's waitlist first (lua/lib/waitlist.lua);
-- an auction's hold (its sale-like hash's kind 'auction') leaves its unit with the
-- auction instead (server/features/auctions.py).
-- #include offer
-- #include waitlist
-- #include epoch
if not room_epoch(KEYS[8]) then return {'rebuilding'} end
local h = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'buyer', 'quantity', 'product_id',
  'coupon_id', 'ip')
if not h[1] then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {'missing'}
end
if ARGV[2] == 'release' and h[3] ~= ARGV[3] then return {'missing'} end
local movable = h[1] == 'held' or (ARGV[2] == 'void' and h[1] == 'confirming')
if not movable then
  if h[1] ~= 'confirming' then redis.call('ZREM', KEYS[5], ARGV[1]) end
  return {h[1]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state
if ARGV[2] == 'void' then
  state = 'aborted'
elseif now >= tonumber(h[2]) then
  state = 'expired'
elseif ARGV[2] == 'expire' then
  return {'not_due'}
else
  state = 'released'
end
local qty = tonumber(h[4])
-- An auction's winning hold that lapses leaves its unit with the auction (still held
-- in stock) for the host's second-chance offer, and marks the buyer's unpaid win.
local sid = redis.call('HGET', KEYS[1], 'sale_id')
local aside = redis.call('HGET', KEYS[3], 'kind') == 'auction'
if aside then
  local ak = ARGV[5] .. 'auction:' .. string.sub(sid, 4)
  redis.call('HSET', ak, 'unit', 'aside')
  if state ~= 'aborted' then redis.call('SADD', ARGV[5] .. 'unpaid', h[3]) end
else
  redis.call('HINCRBY', KEYS[2], 'left', qty)
  redis.call('HINCRBY', KEYS[2], 'held', -qty)
end
redis.call('HINCRBY', KEYS[3], 'held', -qty)
redis.call('HINCRBY', KEYS[4], h[3], -qty)
if redis.call('HINCRBY', KEYS[9], h[3], -1) <= 0 then redis.call('HDEL', KEYS[9], h[3]) end
if h[7] and h[7] ~= '' and redis.call('HINCRBY', KEYS[10], h[7], -qty) <= 0 then
  redis.call('HDEL', KEYS[10], h[7])
end
redis.call('HSET', KEYS[1], 'state', state)
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
if h[6] and h[6] ~= '' and redis.call('HGET', KEYS[7], h[3]) == 'reserved:' .. ARGV[1] then
  redis.call('HSET', KEYS[7], h[3], 'claimed')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local out, more = {}, false
if not aside then
  out, more = promote_waitlist(ARGV[5], h[5], now, ARGV[6], tonumber(ARGV[7]),
    tonumber(ARGV[8]), tonumber(ARGV[9]))
end
table.insert(out, 1, more and 1 or 0)
table.insert(out, 1, state)
table.insert(out, 1, h[5])
table.insert(out, 1, qty)
table.insert(out, 1, 'done')
return out
