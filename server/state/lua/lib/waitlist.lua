-- Waitlist promotion, included by release.lua and promote.lua (server/state/ledger.py
-- puts this text where a script says `-- #include waitlist`), after lib/offer.lua.
-- The keys are built from the room's prefix: they share its hash tag (one cluster slot).

-- Promotion: units in a product's stock go to the head of its waitlist, one unit per
-- waiting viewer, each as a hold of their own, while an offer is open. A viewer with
-- no open connection keeps their place for keep_ms after leaving but is passed over
-- meanwhile; one away longer, or whose per-buyer limit or open-hold cap is reached,
-- or who is not shop-signed while the room sells to signed customers only, is taken
-- off the list. One call makes at most PROMOTE_MOVES moves (served or taken off), so
-- no single step or event grows with the line: the caller calls again while `more`
-- says it stopped there (features/waitlist.py). It passes over at most PROMOTE_SKIPS
-- viewers who are away: the ones behind more than that wait until places run out.
-- Returns a flat array (per viewer served 'offer', viewer, ticket, hold json; per
-- viewer taken off 'dropped', viewer, ticket, reason) and `more`.
local PROMOTE_MOVES = 64
local PROMOTE_SKIPS = 1024
local function promote_waitlist(base, pid, now, seed, hold_ms, max_open, keep_ms)
  local out = {}
  local wl = base .. 'wl:' .. pid
  if redis.call('ZCARD', wl) == 0 then return out, false end
  local gone = base .. 'gone'
  redis.call('ZREMRANGEBYSCORE', gone, '-inf', '(' .. (now - keep_ms))
  local sid, s, cap = room_offer(base, pid, now)
  if not sid then return out, false end
  local sale_key, bought = base .. 'sale:' .. sid, base .. 'bought:' .. sid
  local stock, present = base .. 'stock:' .. pid, base .. 'present'
  local open_holds, holds = base .. 'openholds', base .. 'holds'
  local signed_only = redis.call('HGET', base .. 'policy', 'require_verified') == '1'
  local limit = tonumber(s[7])
  local at, n, moves = 0, 0, 0
  local function drop(v, ticket, reason)
    moves = moves + 1
    redis.call('ZREM', wl, v)
    out[#out + 1] = 'dropped'; out[#out + 1] = v; out[#out + 1] = ticket
    out[#out + 1] = reason
  end
  while true do
    local left = tonumber(redis.call('HGET', stock, 'left') or '0')
    if cap and cap < left then left = cap end
    if left < 1 then break end
    if moves == PROMOTE_MOVES then return out, true end
    local head = redis.call('ZRANGE', wl, at, at, 'WITHSCORES')
    if #head == 0 then break end
    local v, ticket = head[1], head[2]
    if redis.call('HEXISTS', present, v) == 0 then
      if not redis.call('ZSCORE', gone, v) then
        drop(v, ticket, 'away')
      elseif at == PROMOTE_SKIPS then
        break
      else
        at = at + 1
      end
    elseif signed_only and string.sub(v, 1, 5) ~= 'shop_' then
      drop(v, ticket, 'signed_identity_required')
    elseif tonumber(redis.call('HGET', bought, v) or '0') + 1 > limit then
      drop(v, ticket, 'limit_reached')
    elseif tonumber(redis.call('HGET', open_holds, v) or '0') >= max_open then
      drop(v, ticket, 'too_many_holds')
    else
      n = n + 1
      moves = moves + 1
      local hid = seed .. 'w' .. n
      local expires = now + hold_ms
      redis.call('HINCRBY', open_holds, v, 1)
      redis.call('HINCRBY', stock, 'left', -1)
      redis.call('HINCRBY', stock, 'held', 1)
      redis.call('HINCRBY', sale_key, 'held', 1)
      redis.call('HINCRBY', bought, v, 1)
      if cap then cap = cap - 1 end
      redis.call('HSET', base .. 'hold:' .. hid, 'id', hid, 'buyer', v, 'product_id', pid,
        'sale_id', sid, 'quantity', 1, 'unit_price', s[8], 'currency', s[9],
        'created_at', now, 'expires_at', expires, 'state', 'held', 'waitlist', ticket)
      redis.call('ZADD', holds, expires, hid)
      redis.call('ZREM', wl, v)
      out[#out + 1] = 'offer'; out[#out + 1] = v; out[#out + 1] = ticket
      out[#out + 1] = cjson.encode({id = hid, product_id = pid, sale_id = sid, quantity = 1,
        unit_price = tonumber(s[8]), currency = s[9], created_at = now, expires_at = expires})
    end
  end
  return out, false
end
