-- End an auction, in one step: at its end by the clock ('due'; refused before it, and
-- the timer put back at the end in force), early by the host ('now'), or with no
-- winner ('cancel'; also returns a unit the auction kept after an unpaid win). The
-- leader wins if the reserve is met: they get a hold of the unit at the winning amount,
-- made here as reserve.lua makes one, so its expiry, release and checkout are any
-- hold's. Nobody wins: the unit goes back to stock.
-- KEYS[1] auction hash, KEYS[2] product stock hash, KEYS[3] the winner's sale-like hash,
-- KEYS[4] per-buyer units of it, KEYS[5] expiring-holds zset, KEYS[6] open holds per
-- viewer, KEYS[7] timers zset, KEYS[8] the room's epoch (absent: Redis is being
-- rebuilt), KEYS[9] the product's open auction id, KEYS[10] the winner's hold hash (by
-- the new hold id)
-- ARGV[1] auction id, ARGV[2] 'due' | 'now' | 'cancel', ARGV[3] the winner's new hold id
-- Returns {'rebuilding'} | {'missing'} | {'not_due', ends_at} | {'over', state, unit}
--   | {'returned'} | {'ended', ended_by, winner ('' for none), hold id, expires_at,
--      ended_at}
-- #include auction
-- #include epoch
if not room_epoch(KEYS[8]) then return {'rebuilding'} end
local a = redis.call('HMGET', KEYS[1], 'state', 'ends_at', 'leader', 'amount', 'reserve',
  'pay_ms', 'currency', 'unit', 'bought_now', 'product_id')
if not a[1] then return {'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function unit_back()
  redis.call('HINCRBY', KEYS[2], 'left', 1)
  redis.call('HINCRBY', KEYS[2], 'held', -1)
end
if a[1] ~= 'open' then
  if ARGV[2] == 'cancel' and a[8] == 'aside' then
    unit_back()
    redis.call('HSET', KEYS[1], 'unit', 'returned')
    return {'returned'}
  end
  return {'over', a[1], a[8]}
end
local member = 'auction_close:' .. ARGV[1]
if ARGV[2] == 'due' and now < tonumber(a[2]) then
  redis.call('ZADD', KEYS[7], a[2], member)
  return {'not_due', a[2]}
end
redis.call('ZREM', KEYS[7], member)
if redis.call('GET', KEYS[9]) == ARGV[1] then redis.call('DEL', KEYS[9]) end
local ended_by = 'clock'
if ARGV[2] == 'cancel' then
  ended_by = 'cancelled'
elseif a[9] == '1' then
  ended_by = 'buy_now'
elseif ARGV[2] == 'now' then
  ended_by = 'host'
end
redis.call('HSET', KEYS[1], 'state', ended_by == 'cancelled' and 'cancelled' or 'ended',
  'ended_at', now, 'ended_by', ended_by)
local reserve = tonumber(a[5])
if ended_by == 'cancelled' or a[3] == '' or (reserve > 0 and tonumber(a[4]) < reserve) then
  unit_back()
  redis.call('HSET', KEYS[1], 'unit', 'none')
  return {'ended', ended_by, '', '', 0, now}
end
local buyer, expires = a[3], now + tonumber(a[6])
make_hold(KEYS[3], KEYS[4], KEYS[6], KEYS[5], KEYS[10], ARGV[3], ARGV[1], buyer, a[10], a[4],
  a[7], now, expires)
redis.call('HSET', KEYS[1], 'unit', 'held', 'winner', buyer, 'hold_id', ARGV[3],
  'hold_expires', expires)
return {'ended', ended_by, buyer, ARGV[3], expires, now}
