-- Which offer a buy gets now: the one rule, in Lua (server/core/views.py `sale_state`
-- is its Python form for views). Included by reserve.lua, release.lua, promote.lua and
-- join_waitlist.lua (server/state/ledger.py puts this text where a script says
-- `-- #include offer`).

local OFFER_FIELDS = {'starts_at', 'ends_at', 'state', 'units', 'held', 'sold', 'limit',
  'price', 'currency'}

-- The product's offer by the server clock `now`: its sale `sid` (the product's current
-- one, '' for none; hash at `sale_key`) while it is open, else its listing (hash at
-- `listing_key`) if open and whole. Returns the kind ('sale' or 'listing'), the offer's
-- OFFER_FIELDS, and the sale's own cap on units (nil for the listing, which only the
-- stock bounds); or nil, nil, nil and why nothing is open: the sale's 'ended' or
-- 'not_started', 'not_on_sale' without a sale, 'missing' when `sid` has no hash.
local function offer_of(sid, sale_key, listing_key, now)
  local closed = 'not_on_sale'
  if sid ~= '' then
    local s = redis.call('HMGET', sale_key, unpack(OFFER_FIELDS))
    if not s[1] then return nil, nil, nil, 'missing' end
    if s[3] == 'stopped' or now >= tonumber(s[2]) then
      closed = 'ended'
    elseif now < tonumber(s[1]) then
      closed = 'not_started'
    else
      return 'sale', s, tonumber(s[4]) - tonumber(s[5]) - tonumber(s[6])
    end
  end
  local l = redis.call('HMGET', listing_key, unpack(OFFER_FIELDS))
  -- (A listing without its price, never made whole, sells nothing.)
  if l[3] == 'open' and l[8] then return 'listing', l, nil end
  return nil, nil, nil, closed
end

-- The offer of product `pid` in the room of key prefix `base`: its sale id ('' for the
-- listing, whose id is 'bn_' .. pid), then what offer_of returns.
local function room_offer(base, pid, now)
  local sid = redis.call('GET', base .. 'psale:' .. pid) or ''
  local kind, s, cap, closed = offer_of(sid, base .. 'sale:' .. sid, base .. 'sale:bn_' .. pid,
    now)
  if kind == 'listing' then sid = 'bn_' .. pid end
  return kind and sid, s, cap, closed
end

-- Units a buyer could get now: the stock left, within the open sale's cap; 0 with no
-- offer open.
local function available(base, pid, now)
  local sid, _, cap = room_offer(base, pid, now)
  if not sid then return 0 end
  local left = tonumber(redis.call('HGET', base .. 'stock:' .. pid, 'left') or '0')
  if cap and cap < left then return cap end
  return left
end
