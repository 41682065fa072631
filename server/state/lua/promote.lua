-- Give the units in a product's stock to the head of its waitlist (lua/lib/waitlist.lua),
-- when units came back by a path that does not do it itself: stock added by the host,
-- a stopped sale's voided holds, an offer that opened (a sale, the listing).
-- KEYS[1] the room's epoch (absent: Redis is being rebuilt, nothing moves)
-- ARGV[1] room key prefix ('ls:{room}:'), ARGV[2] product id, ARGV[3] id seed for new
-- holds, ARGV[4] hold lifetime ms, ARGV[5] most open holds per viewer,
-- ARGV[6] ms a viewer who left keeps their place
-- Returns {'rebuilding'} | {'ok', viewers still waiting, 1 when there is more to do,
-- moves...} (the moves as promote_waitlist returns them)
-- #include offer
-- #include waitlist
-- #include epoch
if not room_epoch(KEYS[1]) then return {'rebuilding'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moves, more = promote_waitlist(ARGV[1], ARGV[2], now, ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6]))
table.insert(moves, 1, more and 1 or 0)
table.insert(moves, 1, redis.call('ZCARD', ARGV[1] .. 'wl:' .. ARGV[2]))
table.insert(moves, 1, 'ok')
return moves
