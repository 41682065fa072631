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
