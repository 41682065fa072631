-- Waitlists, included by release.lua, promote.lua and join_waitlist.lua
-- (server/state/ledger.py puts this text where a script says `-- #include waitlist`).
-- The keys are built from the room's prefix: they share its hash tag (one cluster slot).

local OFFER_FIELDS = {'starts_at', 'ends_at', 'state', 'units', 'held', 'sold', 'limit',
  'price', 'currency'}

-- The product's offer now, by reserve.lua's rule: its sale while it is open, else its
-- listing if open (and whole). Returns sale id, its fields, and the sale's own cap on
-- units (nil for the listing, which only the stock bounds); nil when nothing is open.
local function offer_of(base, pid, now)
  local sid = redis.call('GET', base .. 'psale:' .. pid) or ''
  if sid ~= '' then
    local s = redis.call('HMGET', base .. 'sale:' .. sid, unpack(OFFER_FIELDS))
    if s[1] and s[3] ~= 'stopped' and now < tonumber(s[2]) and now >= tonumber(s[1]) then
      return sid, s, tonumber(s[4]) - tonumber(s[5]) - tonumber(s[6])
    end
  end
  sid = 'bn_' .. pid
  local s = redis.call('HMGET', base .. 'sale:' .. sid, unpack(OFFER_FIELDS))
  if s[3] == 'open' and s[8] then return sid, s, nil end
  return nil, nil, nil
end

-- Units a buyer could get now: the stock left, within the open sale's cap; 0 with no
-- offer open.
local function available(base, pid, now)
  local sid, _, cap = offer_of(base, pid, now)
  if not sid then return 0 end
  local left = tonumber(redis.call('HGET', base .. 'stock:' .. pid, 'left') or '0')
  if cap and cap < left then return cap end
  return left
end

-- Promotion: units in a product's stock go to the head of its waitlist, one unit per
-- waiting viewer, each as a hold of their own, while an offer is open. A viewer with
-- no open connection keeps their place for keep_ms after leaving but is passed over
-- meanwhile; one away longer, or whose per-buyer limit or open-hold cap is reached,
-- or who is not shop-signed while the room sells to signed customers only, is taken
-- off the list.
-- Returns a flat array: per viewer served 'offer', viewer, ticket, hold json; per
-- viewer taken off 'dropped', viewer, ticket, reason.
local function promote_waitlist(base, pid, now, seed, hold_ms, max_open, keep_ms)
  local out = {}
  local wl = base .. 'wl:' .. pid
  if redis.call('ZCARD', wl) == 0 then return out end
  local gone = base .. 'gone'
  redis.call('ZREMRANGEBYSCORE', gone, '-inf', '(' .. (now - keep_ms))
  local sid, s, cap = offer_of(base, pid, now)
  if not sid then return out end
  local sale_key, bought = base .. 'sale:' .. sid, base .. 'bought:' .. sid
  local stock, present = base .. 'stock:' .. pid, base .. 'present'
  local open_holds, holds = base .. 'openholds', base .. 'holds'
  local signed_only = redis.call('HGET', base .. 'policy', 'require_verified') == '1'
  local limit = tonumber(s[7])
  local at, n = 0, 0
  local function drop(v, ticket, reason)
    redis.call('ZREM', wl, v)
    out[#out + 1] = 'dropped'; out[#out + 1] = v; out[#out + 1] = ticket
    out[#out + 1] = reason
  end
  while true do
    local left = tonumber(redis.call('HGET', stock, 'left') or '0')
    if cap and cap < left then left = cap end
    if left < 1 then break end
    local head = redis.call('ZRANGE', wl, at, at, 'WITHSCORES')
    if #head == 0 then break end
    local v, ticket = head[1], head[2]
    if redis.call('HEXISTS', present, v) == 0 then
      if redis.call('ZSCORE', gone, v) then at = at + 1 else drop(v, ticket, 'away') end
    elseif signed_only and string.sub(v, 1, 5) ~= 'shop_' then
      drop(v, ticket, 'signed_identity_required')
    elseif tonumber(redis.call('HGET', bought, v) or '0') + 1 > limit then
      drop(v, ticket, 'limit_reached')
    elseif tonumber(redis.call('HGET', open_holds, v) or '0') >= max_open then
      drop(v, ticket, 'too_many_holds')
    else
      n = n + 1
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
  return out
end
