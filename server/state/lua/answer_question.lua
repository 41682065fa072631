-- The host marks a question answered, once: off the unanswered ranking, its asker's
-- count of unanswered questions down, its answered time and final votes in its JSON.
-- KEYS[1] questions (hash id -> question JSON), KEYS[2] unanswered questions (zset id ->
-- votes), KEYS[3] unanswered questions per viewer (hash)
-- ARGV[1] question id, ARGV[2] the answered time (ms)
-- Returns {'ok', question JSON} | {'refused', 'question_not_found' | 'question_answered'}
local q = redis.call('HGET', KEYS[1], ARGV[1])
if not q then return {'refused', 'question_not_found'} end
local votes = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not votes then return {'refused', 'question_answered'} end
redis.call('ZREM', KEYS[2], ARGV[1])
local d = cjson.decode(q)
if redis.call('HINCRBY', KEYS[3], d.viewer_id, -1) <= 0 then
  redis.call('HDEL', KEYS[3], d.viewer_id)
end
d.votes = tonumber(votes)
d.answered_at = tonumber(ARGV[2])
local out = cjson.encode(d)
redis.call('HSET', KEYS[1], ARGV[1], out)
return {'ok', out}
