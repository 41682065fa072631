"""The state layer: the code that talks to Redis and to the order store.

`scripts` runs the atomic Lua scripts (one typed method per script, its
KEYS/ARGV contract beside the script in `lua/`), `store` is the order store's
interface (`sqlite_store` its SQLite implementation), `connections` builds the
Redis clients, `health` watches Redis, `embedded_redis` and `redis_supervisor`
run the embedded redis-server and `ownership` guards the data directory both
live in. Only
this layer imports the Redis client or a database driver (tests/test_layers.py,
with an allowlist of modules still to be moved here; docs/architecture.md).
"""
