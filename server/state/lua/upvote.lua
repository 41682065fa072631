-- A viewer's upvote of another's unanswered question, in one step: one per viewer and
-- question (again: the count, nothing more), never one's own.
-- KEYS[1] questions (hash id -> question JSON), KEYS[2] unanswered questions (zset id ->
-- votes), KEYS[3] the question's voters (set), KEYS[4] the room's epoch (absent: Redis is
-- being rebuilt), KEYS[5] room policy hash
-- ARGV[1] question id, ARGV[2] viewer, ARGV[3] '1' when the viewer's identity is
-- shop-signed
-- Returns {'ok', votes, 1 for a new upvote | 0 for one counted before} | {'rebuilding'}
--   | {'refused', code}
-- #include epoch
if not room_epoch(KEYS[4]) then return {'rebuilding'} end
local q = redis.call('HGET', KEYS[1], ARGV[1])
if not q then return {'refused', 'question_not_found'} end
if cjson.decode(q).viewer_id == ARGV[2] then return {'refused', 'own_question'} end
local votes = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not votes then return {'refused', 'question_answered'} end
if ARGV[3] ~= '1' and redis.call('HGET', KEYS[5], 'require_verified') == '1' then
  return {'refused', 'signed_identity_required'}
end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return {'ok', tonumber(votes), 0} end
return {'ok', tonumber(redis.call('ZINCRBY', KEYS[2], 1, ARGV[1])), 1}
