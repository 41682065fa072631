-- Stop a sale and void its open holds in one atomic step: from here no buy of it
-- succeeds and no hold of it can be checked out; the held units go back to stock.
-- Holds already in checkout ('confirming') finish: their checkout began before the
-- stop. Hold keys are built from the room's key prefix: they share the room's hash
-- tag, so they are in the same cluster slot as the declared keys.
-- KEYS[1] sale hash, KEYS[2] product stock hash, KEYS[3] per-buyer units of the sale,
-- KEYS[4] expiring-holds zset, KEYS[5] timers zset, KEYS[6] open holds per viewer,
-- KEYS[7] units per client address of the sale
-- ARGV[1] sale id, ARGV[2] room key prefix ('ls:{room}:'), ARGV[3] ms to keep voided holds
-- Returns {'stopped', units voided, voided hold ids...} | {'missing'} | {'over'}
local s = redis.call('HMGET', KEYS[1], 'state', 'ends_at')
if not s[1] then return {'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if s[1] == 'stopped' or now >= tonumber(s[2]) then return {'over'} end
redis.call('HSET', KEYS[1], 'state', 'stopped')
redis.call('ZREM', KEYS[5], 'sale_open:' .. ARGV[1], 'sale_close:' .. ARGV[1])
local out = {'stopped', 0}
local units = 0
for _, hid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local hk = ARGV[2] .. 'hold:' .. hid
  local h = redis.call('HMGET', hk, 'state', 'sale_id', 'buyer', 'quantity', 'ip')
  if h[1] == 'held' and h[2] == ARGV[1] then
    local qty = tonumber(h[4])
    redis.call('HINCRBY', KEYS[2], 'left', qty)
    redis.call('HINCRBY', KEYS[2], 'held', -qty)
    redis.call('HINCRBY', KEYS[1], 'held', -qty)
    redis.call('HINCRBY', KEYS[3], h[3], -qty)
    if redis.call('HINCRBY', KEYS[6], h[3], -1) <= 0 then redis.call('HDEL', KEYS[6], h[3]) end
    if h[5] and h[5] ~= '' and redis.call('HINCRBY', KEYS[7], h[5], -qty) <= 0 then
      redis.call('HDEL', KEYS[7], h[5])
    end
    redis.call('HSET', hk, 'state', 'voided')
    redis.call('PEXPIRE', hk, ARGV[3])
    redis.call('ZREM', KEYS[4], hid)
    units = units + qty
    out[#out + 1] = hid
  end
end
out[2] = units
return out
