-- Give back units of a placed order, once per change: the host cancelled it (mode
-- 'cancel': every unit, and a coupon it used is the buyer's again) or refunded some of
-- its units into stock (mode 'refund'). Recorded in the store first. The units go back
-- to the product's stock and out of the sale's sold count, and the buyer's per-buyer
-- and per-address counts give them back.
-- KEYS[1] the order's hold hash (kept a while after checkout; may be gone), KEYS[2]
-- product stock hash, KEYS[3] sale hash, KEYS[4] per-buyer units of the sale, KEYS[5]
-- units per client address of the sale, KEYS[6] coupon claims hash (unused without a
-- coupon), KEYS[7] changes made (hash change id -> ms), KEYS[8] the room's epoch
-- ARGV[1] the change's id (the order id for a cancellation, the refund's id), ARGV[2]
-- buyer, ARGV[3] quantity, ARGV[4] the order's coupon id ('' without), ARGV[5] the epoch
-- the change was recorded under, ARGV[6] ms now, ARGV[7] mode 'cancel' | 'refund
-- Returns {'ok'} | {'already'} | {'rebuilt'} (Redis was rebuilt from the store since:
-- its counts already leave the order out)
-- #include epoch
if room_epoch(KEYS[8]) ~= ARGV[5] then return {'rebuilt'} end
if redis.call('HEXISTS', KEYS[7], ARGV[1]) == 1 then return {'already'} end
local qty = tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[2], 'sold', -qty)
redis.call('HINCRBY', KEYS[2], 'left', qty)
-- An offer's hash may be gone (a stopped sale's keys are kept, not every kind's).
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HINCRBY', KEYS[3], 'sold', -qty) end
if redis.call('HINCRBY', KEYS[4], ARGV[2], -qty) <= 0 then
  redis.call('HDEL', KEYS[4], ARGV[2])
end
local client = redis.call('HGET', KEYS[1], 'client')
if client and client ~= '' and redis.call('HEXISTS', KEYS[5], client) == 1 then
  if redis.call('HINCRBY', KEYS[5], client, -qty) <= 0 then redis.call('HDEL', KEYS[5], client) end
end
if ARGV[7] == 'cancel' then
  if ARGV[4] ~= '' and redis.call('HGET', KEYS[6], ARGV[2]) == 'used:' .. ARGV[1] then
    redis.call('HSET', KEYS[6], ARGV[2], 'claimed')
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'state', 'cancelled')
  end
end
redis.call('HSET', KEYS[7], ARGV[1], ARGV[6])
return {'ok'}
