-- A viewer's vote in a poll, in one step: one vote per viewer and poll, the first
-- decides; the same vote again is answered again (a retry is safe whatever its request
-- id); the server's clock closes the poll.
-- KEYS[1] poll hash, KEYS[2] votes (hash viewer -> option), KEYS[3] the room's epoch
-- (absent: Redis is being rebuilt), KEYS[4] room policy hash
-- ARGV[1] viewer, ARGV[2] option (0-based), ARGV[3] '1' when the viewer's identity is
-- shop-signed
-- Returns {'ok', option, 1 for a new vote | 0 for the same again} | {'rebuilding'}
--   | {'refused', code, the option counted (already_voted) or ''}
-- #include epoch
if not room_epoch(KEYS[3]) then return {'rebuilding'} end
local p = redis.call('HMGET', KEYS[1], 'state', 'closes_at', 'options')
if not p[1] then return {'refused', 'poll_not_found', ''} end
local option = tonumber(ARGV[2])
if option >= tonumber(p[3]) then return {'refused', 'bad_option', ''} end
local mine = redis.call('HGET', KEYS[2], ARGV[1])
if mine then
  if tonumber(mine) == option then return {'ok', option, 0} end
  return {'refused', 'already_voted', mine}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if p[1] ~= 'open' or now >= tonumber(p[2]) then return {'refused', 'poll_closed', ''} end
if ARGV[3] ~= '1' and redis.call('HGET', KEYS[4], 'require_verified') == '1' then
  return {'refused', 'signed_identity_required', ''}
end
redis.call('HSET', KEYS[2], ARGV[1], option)
redis.call('HINCRBY', KEYS[1], 'v' .. option, 1)
return {'ok', option, 1}
