-- A bid on an auction, decided in one atomic step by the server's clock: eligibility,
-- the minimum next bid, proxy (maximum) bids with ties to the earlier maximum, the
-- anti-snipe extension, buy-now, and the chain entry of the new leading bid
-- (docs/protocol.md section 15 states the rule step by step).
-- KEYS[1] request-id answer, KEYS[2] auction hash, KEYS[3] the auction's chain (list),
-- KEYS[4] bidders' maxima (hash viewer -> max), KEYS[5] the room's epoch (absent: Redis
-- is being rebuilt), KEYS[6] room policy hash, KEYS[7] viewers who let a win lapse (set)
-- ARGV[1] bidder, ARGV[2] bidder's nickname, ARGV[3] amount, ARGV[4] maximum ('' for
-- none), ARGV[5] '1' when the bidder's identity is shop-signed, ARGV[6] answer TTL s,
-- ARGV[7] auction id
-- Returns {'dup', answer} | {'rebuilding'} | {'refused', answer}
--   | {'ok' | 'outbid', answer, event JSON ('' when nothing public changed), entry JSON
--      with the bidder's id ('' for none), the bidder's maximum, the server time}
-- #include auction
-- #include epoch
local cached = redis.call('GET', KEYS[1])
if cached then return {'dup', cached} end
if not room_epoch(KEYS[5]) then return {'rebuilding'} end
local a = redis.call('HMGET', KEYS[2], 'state', 'ends_at', 'start', 'bands', 'mode',
  'extend_ms', 'buy_now', 'signed_only', 'leader', 'leader_max', 'amount', 'bids', 'head',
  'salt', 'second_max', 'reserve', 'leader_name', 'product_id', 'extensions', 'leader_ps')
local function refuse(code, details)
  return {'refused', cjson.encode({error = code, details = details})}
end
if not a[1] then return refuse('auction_not_found') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(a[2])
if a[1] ~= 'open' or now >= ends then return refuse('auction_ended') end
if ARGV[5] ~= '1' and (a[8] == '1'
    or redis.call('HGET', KEYS[6], 'require_verified') == '1') then
  return refuse('not_eligible', {reason = 'signed_identity_required'})
end
if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then
  return refuse('not_eligible', {reason = 'unpaid_win'})
end
local amount = tonumber(ARGV[3])
local mx = amount
if ARGV[4] ~= '' then mx = tonumber(ARGV[4]) end
local bands, start = a[4], tonumber(a[3])
local leader = a[9]
local cur = nil
if leader ~= '' then cur = tonumber(a[11]) end
local least = min_next(cur, start, bands)
if amount < least then return refuse('below_minimum', {min_next = least}) end
local leader_max = tonumber(a[10])
local function remember(status, answer, event, entry)
  redis.call('SET', KEYS[1], answer, 'EX', ARGV[6])
  return {status, answer, event, entry, mx, now}
end
if leader == ARGV[1] then
  if mx <= leader_max then return refuse('self_outbid', {max_amount = leader_max}) end
  -- The leader raises their maximum: nothing public changes.
  redis.call('HSET', KEYS[2], 'leader_max', mx)
  redis.call('HSET', KEYS[4], ARGV[1], mx)
  return remember('ok', cjson.encode({auction_id = ARGV[7], outcome = 'max_raised',
    amount = cur, max_amount = mx, min_next = least, ends_at = ends,
    pseudonym = a[20]}), '', '')
end
local old = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if mx > old then redis.call('HSET', KEYS[4], ARGV[1], mx) end
local function pseudonym(viewer)
  return string.sub(redis.sha1hex(a[14] .. ':' .. viewer), 1, 12)
end
local kind, who, who_name, price = 'bid', ARGV[1], ARGV[2], amount
local buy_now = tonumber(a[7])
local won = false
if buy_now > 0 and tonumber(a[12]) == 0 and amount >= buy_now then
  kind, price, won = 'buy_now', buy_now, true
elseif leader == '' then
  price = amount
elseif mx > leader_max then
  price = math.max(amount, math.min(mx, leader_max + step_at(leader_max, bands)))
  -- The leader it displaces is the runner-up now: their maximum is the highest after
  -- the new leader's (every other maximum lost to theirs).
  redis.call('HSET', KEYS[2], 'second', leader, 'second_max', leader_max,
    'second_name', a[17])
else
  -- Not above the leader's maximum (a tie goes to the earlier one): the leader's proxy
  -- bids for them, as far as it takes.
  kind, who, who_name = 'proxy', leader, a[17]
  price = math.min(leader_max, mx + step_at(mx, bands))
  if mx > tonumber(a[15]) then
    redis.call('HSET', KEYS[2], 'second', ARGV[1], 'second_max', mx,
      'second_name', ARGV[2])
  end
end
local new_ends, extended = ends, false
if won then
  new_ends = now
elseif a[5] == 'extend' and ends - now < tonumber(a[6]) then
  new_ends, extended = now + tonumber(a[6]), true
end
local seq = tonumber(a[12]) + 1
local ps = pseudonym(who)
local hash = entry_hash(a[13], seq, ps, price, now, new_ends, kind)
local entry = {seq = seq, bidder = ps, amount = price, at = now, ends_at = new_ends,
  kind = kind, prev = a[13], hash = hash}
local exts = tonumber(a[19]) + (extended and 1 or 0)
redis.call('HSET', KEYS[2], 'amount', price, 'leader', who, 'leader_ps', ps,
  'leader_name', who_name, 'bids', seq, 'head', hash, 'ends_at', new_ends,
  'extensions', exts)
if who == ARGV[1] then redis.call('HSET', KEYS[2], 'leader_max', mx) end
if won then redis.call('HSET', KEYS[2], 'bought_now', '1') end
local reserve = tonumber(a[16])
local next_least = min_next(price, start, bands)
local event = cjson.encode({auction_id = ARGV[7], product_id = a[18], entry = entry,
  leader = ps, leader_name = who_name, amount = price, min_next = next_least,
  ends_at = new_ends, extended = extended, extensions = exts, bids = seq,
  reserve_met = reserve == 0 or price >= reserve, buy_now_price = cjson.null})
entry.viewer, entry.name = who, who_name
local stored = cjson.encode(entry)
redis.call('RPUSH', KEYS[3], stored)
if who ~= ARGV[1] then
  -- `entry_seq` and `max_amount` beside the refusal (not in its details): what a retry under
  -- this request id needs to record this step and no more.
  return remember('outbid', cjson.encode({error = 'outbid_by_proxy',
    details = {amount = price, min_next = next_least, pseudonym = pseudonym(ARGV[1])},
    entry_seq = seq, max_amount = mx}), event, stored)
end
return remember('ok', cjson.encode({auction_id = ARGV[7],
  outcome = won and 'won' or 'leading', amount = price, max_amount = mx,
  min_next = next_least, ends_at = new_ends, pseudonym = ps, entry_seq = seq}), event, stored)
