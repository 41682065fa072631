-- Set a product's total stock; units held or sold stay where they are.
-- KEYS[1] product stock hash; ARGV[1] new total
-- Returns {'ok', total, left, held, sold} | {'refused', held + sold}
local h = redis.call('HMGET', KEYS[1], 'held', 'sold')
local held = tonumber(h[1] or '0')
local sold = tonumber(h[2] or '0')
local total = tonumber(ARGV[1])
if total < held + sold then return {'refused', held + sold} end
redis.call('HSET', KEYS[1], 'total', total, 'left', total - held - sold, 'held', held, 'sold', sold)
return {'ok', total, total - held - sold, held, sold}
