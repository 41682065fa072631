-- Enter a viewer into an open lottery: in the room, by the entry rule, once.
-- KEYS[1] request-id answer (set only when the viewer is entered), KEYS[2] lottery
-- hash, KEYS[3] entrants set,
-- KEYS[4] room presence hash, KEYS[5] the room's epoch (absent: Redis is being rebuilt),
-- KEYS[6] room policy hash
-- ARGV[1] viewer, ARGV[2] lower-cased entry text ('' for a button entry),
-- ARGV[3] answer TTL s, ARGV[4] lottery id, ARGV[5] '1' when the viewer's identity is
-- shop-signed
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', answer} | {'ok', answer}
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[5]) then return {'rebuilding'} end
-- A refusal changed nothing and is cheap to decide again: it is not remembered
-- (a retry is evaluated afresh; docs/protocol.md §8).
local function refuse(code)
  return {'refused', cjson.encode({error = code})}
end
if ARGV[5] ~= '1' and redis.call('HGET', KEYS[6], 'require_verified') == '1' then
  return refuse('signed_identity_required')
end
local l = redis.call('HMGET', KEYS[2], 'state', 'closes_at', 'mode', 'keyword')
if not l[1] then return refuse('lottery_not_found') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if l[1] ~= 'open' or now >= tonumber(l[2]) then return refuse('lottery_closed') end
if l[3] == 'keyword' and not string.find(ARGV[2], l[4], 1, true) then
  return refuse('not_eligible')
end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then return refuse('not_eligible') end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return refuse('already_entered') end
local answer = cjson.encode({lottery_id = ARGV[4], entrants = redis.call('SCARD', KEYS[3])})
redis.call('SET', KEYS[1], answer, 'EX', ARGV[3])
return {'ok', answer}
