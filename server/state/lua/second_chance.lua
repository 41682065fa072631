-- The host's second-chance offer, in one step: the winner let their hold lapse, so the
-- unit the auction kept goes to the runner-up (the highest maximum but the winner's,
-- the earlier on a tie) as a hold at that maximum, made as close_auction.lua makes the
-- winner's. Once per auction.
-- KEYS[1] auction hash, KEYS[2] the winner's sale-like hash, KEYS[3] per-buyer units of
-- it, KEYS[4] expiring-holds zset, KEYS[5] open holds per viewer, KEYS[6] the room's
-- epoch (absent: Redis is being rebuilt), KEYS[7] the new hold's hash
-- ARGV[1] auction id, ARGV[2] the new hold id
-- Returns {'rebuilding'} | {'missing'} | {'refused', code}
--   | {'offered', bidder, bidder's pseudonym, name, amount, expires_at}
-- #include auction
-- #include epoch
if not room_epoch(KEYS[6]) then return {'rebuilding'} end
local a = redis.call('HMGET', KEYS[1], 'state', 'unit', 'second', 'second_max',
  'second_name', 'sc_bidder', 'salt', 'currency', 'pay_ms', 'product_id')
if not a[1] then return {'missing'} end
if a[1] == 'open' then return {'refused', 'auction_open'} end
if a[6] then return {'refused', 'second_chance_used'} end
if a[2] == 'returned' then return {'refused', 'unit_returned'} end
if a[2] ~= 'aside' then
  if a[1] == 'cancelled' or a[2] == 'none' then return {'refused', 'no_runner_up'} end
  return {'refused', 'winner_paying'}
end
if not a[3] or a[3] == '' then return {'refused', 'no_runner_up'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local buyer, expires = a[3], now + tonumber(a[9])
local ps = string.sub(redis.sha1hex(a[7] .. ':' .. buyer), 1, 12)
make_hold(KEYS[2], KEYS[3], KEYS[5], KEYS[4], KEYS[7], ARGV[2], ARGV[1], buyer, a[10], a[4],
  a[8], now, expires)
redis.call('HSET', KEYS[1], 'unit', 'held', 'sc_bidder', buyer, 'sc_ps', ps,
  'sc_name', a[5] or '', 'sc_amount', a[4], 'sc_hold', ARGV[2], 'sc_expires', expires)
return {'offered', buyer, ps, a[5] or '', tonumber(a[4]), expires}
