-- The reward decision for an invitee's first order in the show: one per invitee, at most
-- a number paid per inviter. 'undo' takes a decision back (its store write failed);
-- 'reverse' marks a paid reward reversed (the order was cancelled), freeing its place in
-- the inviter's count; the invitee's later orders pay nothing.
-- KEYS[1] referrals (hash invitee -> inviter), KEYS[2] decisions (hash invitee ->
-- 'paid:<order>' | 'capped:<order>' | 'none:<order>'), KEYS[3] rewards paid (hash inviter
-- -> count), KEYS[4] the room's epoch (absent: Redis is being rebuilt)
-- ARGV[1] mode 'decide' | 'undo' | 'reverse', ARGV[2] invitee, ARGV[3] order id, ARGV[4] most rewards
-- paid per inviter (0: no program, nothing is paid)
-- Returns {'paid' | 'capped' | 'none', inviter} (decide) | {'not_invited'} | {'decided',
-- decision} | {'rebuilding'} | {'undone'} | {'kept'} | {'reversed', inviter}
-- #include epoch
if ARGV[1] == 'undo' then
  local d = redis.call('HGET', KEYS[2], ARGV[2])
  if d ~= 'paid:' .. ARGV[3] and d ~= 'capped:' .. ARGV[3] and d ~= 'none:' .. ARGV[3] then
    return {'kept'}
  end
  redis.call('HDEL', KEYS[2], ARGV[2])
  if d == 'paid:' .. ARGV[3] then
    local inviter = redis.call('HGET', KEYS[1], ARGV[2])
    if inviter and redis.call('HINCRBY', KEYS[3], inviter, -1) <= 0 then
      redis.call('HDEL', KEYS[3], inviter)
    end
  end
  return {'undone'}
end
if ARGV[1] == 'reverse' then
  if redis.call('HGET', KEYS[2], ARGV[2]) ~= 'paid:' .. ARGV[3] then return {'kept'} end
  redis.call('HSET', KEYS[2], ARGV[2], 'reversed:' .. ARGV[3])
  local inviter = redis.call('HGET', KEYS[1], ARGV[2])
  if inviter and redis.call('HINCRBY', KEYS[3], inviter, -1) <= 0 then
    redis.call('HDEL', KEYS[3], inviter)
  end
  return {'reversed', inviter or ''}
end
if not room_epoch(KEYS[4]) then return {'rebuilding'} end
local inviter = redis.call('HGET', KEYS[1], ARGV[2])
if not inviter then return {'not_invited'} end
local d = redis.call('HGET', KEYS[2], ARGV[2])
if d then return {'decided', d} end
local most = tonumber(ARGV[4])
local state = 'paid'
if most == 0 then
  state = 'none'
elseif tonumber(redis.call('HGET', KEYS[3], inviter) or '0') >= most then
  state = 'capped'
end
redis.call('HSET', KEYS[2], ARGV[2], state .. ':' .. ARGV[3])
if state == 'paid' then redis.call('HINCRBY', KEYS[3], inviter, 1) end
return {state, inviter}
