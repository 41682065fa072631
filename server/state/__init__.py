"""The state layer: the code that talks to Redis and to the order store.

`scripts` runs the atomic Lua scripts (one typed method per script, its
KEYS/ARGV contract beside the script in `lua/`), `events` is a room's event
stream (publish, pub/sub, the log) and `presence` who watches it, both for the
realtime layer, the `*_data` modules hold what each feature keeps in Redis,
`store` is the order store's interface (`sqlite_store` its SQLite
implementation, `pg_store` its PostgreSQL one), `connections` builds the Redis
clients, `health` watches Redis, `embedded_redis` and `redis_supervisor` run
the embedded redis-server and `ownership` guards the data directory both live
in. Only this layer imports the Redis client or a database driver
(tests/test_layers.py; docs/architecture.md).
"""
