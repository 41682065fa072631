-- The auction rules bid.lua and close_auction.lua share: the increment table and the
-- minimum next bid (server/core/auction_chain.py is their Python form, for checking
-- from outside), and the chain's entry hash.

-- The step of the band `amount` is in; `bands` is "from:step,from:step", sorted, the
-- first from 0.
local function step_at(amount, bands)
  local step = nil
  for from, s in string.gmatch(bands, '(%d+):(%d+)') do
    if step == nil or amount >= tonumber(from) then step = tonumber(s) else break end
  end
  return step
end

-- The least next bid: the start price before any bid, else the amount plus its step.
local function min_next(amount, start, bands)
  if amount == nil then return start end
  return amount + step_at(amount, bands)
end

-- An entry's hash (docs/protocol.md section 15): SHA-1, the one hash a script has.
local function entry_hash(prev, seq, bidder, amount, at, ends_at, kind)
  return redis.sha1hex(prev .. '|' .. seq .. '|' .. bidder .. '|' .. string.format('%d', amount)
    .. '|' .. string.format('%d', at) .. '|' .. string.format('%d', ends_at) .. '|' .. kind)
end

-- A hold of the auction's one unit for `buyer` at `price` until `expires`, made as
-- reserve.lua makes a hold (so expiry, release and checkout treat it as any hold):
-- the hold hash at `hold_key`, its expiry in `holds_key`, the buyer's counts in the
-- sale-like hash's `bought_key` and `open_holds_key`; the unit, held in stock since
-- the auction took it, stays held.
local function make_hold(sale_key, bought_key, open_holds_key, holds_key, hold_key,
                         hold_id, auction_id, buyer, product_id, price, currency, now,
                         expires)
  redis.call('HINCRBY', sale_key, 'held', 1)
  redis.call('HINCRBY', bought_key, buyer, 1)
  redis.call('HINCRBY', open_holds_key, buyer, 1)
  redis.call('HSET', hold_key, 'id', hold_id, 'buyer', buyer, 'product_id', product_id,
    'sale_id', 'au_' .. auction_id, 'quantity', 1, 'unit_price', price,
    'currency', currency, 'created_at', now, 'expires_at', expires, 'state', 'held')
  redis.call('ZADD', holds_key, expires, hold_id)
end
