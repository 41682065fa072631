-- Whether a room is whole here, and its epoch (docs/faults.md, section 2). Included by
-- every script that must refuse while the room is being rebuilt (server/state/ledger.py
-- puts this text where a script says `-- #include epoch`).

-- The room's epoch from its epoch key `key`, or nil while the room is not whole here:
-- the key is absent (the room is being rebuilt), or, on a Redis Cluster, the key names
-- another node as the room's home ('<epoch>@<node id>', set when the room was loaded).
-- A replica promoted after its primary died holds the room's keys as far as they were
-- replicated, which asynchronous replication does not promise is all of them: until the
-- servers have reconciled the room from the order store (server/features/restore.py,
-- Restore.check_homes), nothing of it moves. A slot moved by resharding carries the key
-- to a node it does not name either, until the servers re-home it (nothing was lost).
local function room_epoch(key)
  local value = redis.call('GET', key)
  if not value then return nil end
  local at = string.find(value, '@', 1, true)
  if not at then return value end
  if string.sub(value, at + 1) ~= redis.call('CLUSTER', 'MYID') then return nil end
  return string.sub(value, 1, at - 1)
end
