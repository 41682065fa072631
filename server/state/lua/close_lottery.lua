-- Close an open lottery for drawing; only one caller wins. KEYS[1] lottery hash.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'drawing')
return 1
