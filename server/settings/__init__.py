"""A temporary alias of `server.core.settings` for `server/edges.py`, which
imports `server.settings` and is being reworked on another branch in this
step. Delete this package once edges.py imports `server.core.settings`.
"""

from server.core.settings import ServerSettings as ServerSettings
