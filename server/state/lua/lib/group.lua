-- What start_group.lua and join_group.lua share: who may be a member, and adding one.

-- Why the viewer may not be in a new group of the deal now, or nil: a guest in a room
-- that sells to signed identities only, a viewer already in one of the deal's groups
-- (with that group's id), one with the most open holds a viewer may have.
local function member_refusal(policy_key, deal_members_key, open_holds_key, viewer,
                              verified, max_open)
  if verified ~= '1' and redis.call('HGET', policy_key, 'require_verified') == '1' then
    return {'refused', 'signed_identity_required', ''}
  end
  local mine = redis.call('HGET', deal_members_key, viewer)
  if mine then return {'refused', 'already_in_group', mine} end
  if tonumber(redis.call('HGET', open_holds_key, viewer) or '0') >= tonumber(max_open) then
    return {'refused', 'too_many_holds', ''}
  end
  return nil
end

-- The viewer joins group `gid`: a pending hold of one of the group's units (made as
-- reserve.lua makes a hold, with state 'pending' until the group is full: begin_checkout
-- refuses it, release and expiry pass it by), their place in the group and the deal,
-- and their counts of open holds and of units of the deal.
local function add_member(deal_key, members_key, deal_members_key, hold_key,
                          open_holds_key, bought_key, viewer, gid, hold_id, product_id,
                          price, currency, now, deadline)
  redis.call('HSET', hold_key, 'id', hold_id, 'buyer', viewer, 'product_id', product_id,
    'sale_id', redis.call('HGET', deal_key, 'sale_id'), 'quantity', 1, 'unit_price', price,
    'currency', currency, 'created_at', now, 'expires_at', deadline, 'state', 'pending',
    'group_id', gid)
  redis.call('RPUSH', members_key, viewer .. ':' .. hold_id)
  redis.call('HSET', deal_members_key, viewer, gid)
  redis.call('HINCRBY', open_holds_key, viewer, 1)
  redis.call('HINCRBY', bought_key, viewer, 1)
end
