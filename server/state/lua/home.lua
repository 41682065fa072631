-- A room's home on a Redis Cluster: the node its epoch key names, '<epoch>@<node id>'
-- (lib/epoch.lua refuses the room's moves on any other node). Runs on the node that
-- serves the room's slot now.
-- KEYS[1] the room's epoch
-- ARGV[1] 'mark': set the epoch ARGV[2] with this node as home (ARGV[3] '1': only when
-- the key is absent); 'check': where the room's home is; 'rehome': make this node the
-- home, if the key still names the home ARGV[2] (a slot moved by resharding)
-- Returns {'ok'} | {'kept'} (mark, NX, key present) | {'changed'} (rehome, the key is
-- not what the caller saw) | {'absent'} | {'home', epoch} | {'away', home, this node,
-- promoted}
-- where promoted is 1 when this node was ever promoted from replica (its replication
-- history has a second id): it may lack writes its old primary acknowledged. On a
-- single node (no cluster) no node is named: the epoch is set as it is.
local named = redis.pcall('CLUSTER', 'MYID')
local me = type(named) == 'string' and named or ''
local function stamp(epoch)
  if me == '' then return epoch end
  return epoch .. '@' .. me
end
local value = redis.call('GET', KEYS[1])
if ARGV[1] == 'mark' then
  if value and ARGV[3] == '1' then return {'kept'} end
  redis.call('SET', KEYS[1], stamp(ARGV[2]))
  return {'ok'}
end
if not value then return {'absent'} end
local at = string.find(value, '@', 1, true)
local epoch, home = value, ''
if at then
  epoch, home = string.sub(value, 1, at - 1), string.sub(value, at + 1)
end
if ARGV[1] == 'rehome' then
  if home ~= ARGV[2] then return {'changed'} end
  redis.call('SET', KEYS[1], stamp(epoch))
  return {'ok'}
end
if home == me then return {'home', epoch} end
local info = redis.call('INFO', 'replication')
local promoted = 1
if string.find(info, 'second_repl_offset:-1', 1, true) then promoted = 0 end
return {'away', home, me, promoted}
