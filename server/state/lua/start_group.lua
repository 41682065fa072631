-- A viewer starts a group of a group deal, in one step: the group's N units come out of
-- stock at once (so groups x N never exceed the deal's units, and a group never waits
-- for a unit), the starter holds one of them at the group price as a pending hold (not
-- checkout-able until the group is full), the group's fill deadline goes on the timers.
-- KEYS[1] request-id answer, KEYS[2] the deal (sale-like hash), KEYS[3] product stock hash,
-- KEYS[4] the group hash, KEYS[5] the group's members (list of viewer:hold), KEYS[6] the
-- deal's members (hash viewer -> group), KEYS[7] the deal's open groups (zset -> deadline),
-- KEYS[8] the starter's hold hash, KEYS[9] open holds per viewer, KEYS[10] per-buyer units
-- of the deal, KEYS[11] timers zset, KEYS[12] the room's epoch (absent: being rebuilt),
-- KEYS[13] room policy hash
-- ARGV[1] viewer, ARGV[2] group id, ARGV[3] hold id, ARGV[4] '1' when the viewer's
-- identity is shop-signed, ARGV[5] most open holds per viewer, ARGV[6] answer TTL s,
-- ARGV[7] product id, ARGV[8] the viewer's nickname
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', code, group id or ''}
--   | {'ok', answer}
-- #include group
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[12]) then return {'rebuilding'} end
local d = redis.call('HMGET', KEYS[2], 'state', 'units', 'held', 'sold', 'group_size',
  'fill_ms', 'price', 'currency', 'deal_id')
if not d[1] then return {'refused', 'deal_not_found', ''} end
if d[1] ~= 'open' then return {'refused', 'deal_closed', ''} end
local refused = member_refusal(KEYS[13], KEYS[6], KEYS[9], ARGV[1], ARGV[4], ARGV[5])
if refused then return refused end
local size = tonumber(d[5])
local free = tonumber(d[2]) - tonumber(d[3]) - tonumber(d[4])
if free < size or tonumber(redis.call('HGET', KEYS[3], 'left') or '0') < size then
  return {'refused', 'deal_full', ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(d[6])
redis.call('HINCRBY', KEYS[3], 'left', -size)
redis.call('HINCRBY', KEYS[3], 'held', size)
redis.call('HINCRBY', KEYS[2], 'held', size)
redis.call('HSET', KEYS[4], 'group_id', ARGV[2], 'deal_id', d[9], 'state', 'open',
  'size', size, 'members', 1, 'deadline', deadline, 'starter', ARGV[8], 'created_at', now,
  'names', cjson.encode({ARGV[8]}))
redis.call('ZADD', KEYS[7], deadline, ARGV[2])
redis.call('ZADD', KEYS[11], deadline, 'group_expire:' .. ARGV[2])
add_member(KEYS[2], KEYS[5], KEYS[6], KEYS[8], KEYS[9], KEYS[10], ARGV[1], ARGV[2],
  ARGV[3], ARGV[7], d[7], d[8], now, deadline)
local answer = cjson.encode({group_id = ARGV[2], deal_id = d[9], state = 'open',
  size = size, members = 1, deadline = deadline,
  hold = {id = ARGV[3], unit_price = tonumber(d[7]), currency = d[8], state = 'pending'}})
redis.call('SET', KEYS[1], answer, 'EX', ARGV[6])
return {'ok', answer}
