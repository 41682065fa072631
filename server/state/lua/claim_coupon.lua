-- One coupon of a drop for one viewer, first come first served, at most one each.
-- KEYS[1] request-id answer (set only when a coupon is claimed), KEYS[2] coupon drop
-- hash, KEYS[3] claims hash,
-- KEYS[4] the room's epoch (absent: Redis is being rebuilt), KEYS[5] room policy hash
-- ARGV[1] viewer, ARGV[2] answer TTL s, ARGV[3] coupon id, ARGV[4] '1' when the
-- viewer's identity is shop-signed
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', answer} | {'ok', answer}
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[4]) then return {'rebuilding'} end
-- A refusal changed nothing and is cheap to decide again: it is not remembered
-- (a retry is evaluated afresh; docs/protocol.md §8).
local function refuse(code)
  return {'refused', cjson.encode({error = code})}
end
if ARGV[4] ~= '1' and redis.call('HGET', KEYS[5], 'require_verified') == '1' then
  return refuse('signed_identity_required')
end
local c = redis.call('HMGET', KEYS[2], 'count', 'claimed', 'expires_at', 'for')
-- A drop reserved for one viewer (a referral reward) is theirs already: nobody claims it.
if not c[1] or (c[4] and c[4] ~= '') then return refuse('coupon_not_found') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= tonumber(c[3]) then return refuse('coupon_expired') end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return refuse('already_claimed') end
if tonumber(c[2]) >= tonumber(c[1]) then return refuse('coupon_gone') end
local claimed = redis.call('HINCRBY', KEYS[2], 'claimed', 1)
redis.call('HSET', KEYS[3], ARGV[1], 'claimed')
local answer = cjson.encode({coupon_id = ARGV[3], remaining = tonumber(c[1]) - claimed})
redis.call('SET', KEYS[1], answer, 'EX', ARGV[2])
return {'ok', answer}
