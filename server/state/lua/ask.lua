-- A viewer's question to the host, in one step: at most a few unanswered questions
-- per viewer, the answer remembered under the request id (a retry asks once).
-- KEYS[1] request-id answer, KEYS[2] questions (hash id -> question JSON), KEYS[3]
-- unanswered questions (zset id -> votes), KEYS[4] unanswered questions per viewer (hash),
-- KEYS[5] the room's epoch (absent: Redis is being rebuilt), KEYS[6] room policy hash
-- ARGV[1] question id, ARGV[2] question JSON, ARGV[3] viewer, ARGV[4] most unanswered
-- questions per viewer, ARGV[5] answer TTL s, ARGV[6] '1' when the viewer's identity is
-- shop-signed, ARGV[7] most questions a room keeps (answered ones included)
-- Returns {'dup', question JSON} | {'rebuilding'} | {'refused', code} | {'ok', question JSON}
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[5]) then return {'rebuilding'} end
if ARGV[6] ~= '1' and redis.call('HGET', KEYS[6], 'require_verified') == '1' then
  return {'refused', 'signed_identity_required'}
end
if tonumber(redis.call('HGET', KEYS[4], ARGV[3]) or '0') >= tonumber(ARGV[4]) then
  return {'refused', 'too_many_questions'}
end
-- Every guest may ask: the room's total bounds what its readers (the public question
-- list, the snapshot's ranking) go through.
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then return {'refused', 'questions_full'} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
return {'ok', ARGV[2]}
