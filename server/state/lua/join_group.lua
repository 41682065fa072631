-- A viewer joins an open group, in one step: a pending hold of one of the group's units;
-- the N-th member completes the group, and every member's hold becomes a held one
-- (checkout-able at the group price, expiring like any hold) in this same step.
-- KEYS[1] request-id answer, KEYS[2] the deal (sale-like hash), KEYS[3] the group hash,
-- KEYS[4] the group's members (list of viewer:hold), KEYS[5] the deal's members (hash
-- viewer -> group), KEYS[6] the deal's open groups (zset), KEYS[7] the joiner's hold hash,
-- KEYS[8] open holds per viewer, KEYS[9] per-buyer units of the deal, KEYS[10] the
-- expiring-holds zset, KEYS[11] timers zset, KEYS[12] the room's epoch (absent: being
-- rebuilt), KEYS[13] room policy hash
-- ARGV[1] viewer, ARGV[2] group id, ARGV[3] hold id, ARGV[4] '1' when the viewer's identity
-- is shop-signed, ARGV[5] most open holds per viewer, ARGV[6] answer TTL s, ARGV[7]
-- product id, ARGV[8] hold lifetime ms once complete, ARGV[9] room key prefix, ARGV[10]
-- the joiner's nickname (the group card's avatars)
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', code, group id or ''}
--   | {'ok', answer} | {'complete', answer, member holds...}
-- #include group
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[12]) then return {'rebuilding'} end
local g = redis.call('HMGET', KEYS[3], 'state', 'size', 'members', 'deadline', 'deal_id')
if not g[1] then return {'refused', 'group_not_found', ''} end
local d = redis.call('HMGET', KEYS[2], 'state', 'price', 'currency')
if d[1] ~= 'open' then return {'refused', 'deal_closed', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if g[1] == 'complete' then return {'refused', 'group_full', ''} end
if g[1] ~= 'open' or now >= tonumber(g[4]) then return {'refused', 'group_expired', ''} end
local refused = member_refusal(KEYS[13], KEYS[5], KEYS[8], ARGV[1], ARGV[4], ARGV[5])
if refused then return refused end
local deadline = tonumber(g[4])
add_member(KEYS[2], KEYS[4], KEYS[5], KEYS[7], KEYS[8], KEYS[9], ARGV[1], ARGV[2], ARGV[3],
  ARGV[7], d[2], d[3], now, deadline)
local members = redis.call('HINCRBY', KEYS[3], 'members', 1)
local names = cjson.decode(redis.call('HGET', KEYS[3], 'names') or '[]')
table.insert(names, ARGV[10])
redis.call('HSET', KEYS[3], 'names', cjson.encode(names))
local size = tonumber(g[2])
local hold = {id = ARGV[3], unit_price = tonumber(d[2]), currency = d[3], state = 'pending'}
if members < size then
  local answer = cjson.encode({group_id = ARGV[2], deal_id = g[5], state = 'open',
    size = size, members = members, deadline = deadline, hold = hold})
  redis.call('SET', KEYS[1], answer, 'EX', ARGV[6])
  return {'ok', answer}
end
-- Full: every member's hold is checkout-able now, at the group price.
local expires = now + tonumber(ARGV[8])
local out = {'complete', ''}
for _, m in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  local hid = string.match(m, ':([^:]*)$')
  redis.call('HSET', ARGV[9] .. 'hold:' .. hid, 'state', 'held', 'expires_at', expires)
  redis.call('ZADD', KEYS[10], expires, hid)
  out[#out + 1] = m
end
redis.call('HSET', KEYS[3], 'state', 'complete', 'completed_at', now)
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[11], 'group_expire:' .. ARGV[2])
hold.state, hold.expires_at = 'held', expires
local answer = cjson.encode({group_id = ARGV[2], deal_id = g[5], state = 'complete',
  size = size, members = members, deadline = deadline, hold = hold})
redis.call('SET', KEYS[1], answer, 'EX', ARGV[6])
out[2] = answer
return out
