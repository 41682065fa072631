"""The core layer: settings, errors, key names, the wire vocabulary (incoming
frames in `protocol`, outgoing events in `events`), domain rules and identity.

Pure: nothing here does I/O (no Redis, database, network, subprocess or
server framework) and nothing here imports another layer of the server; every
other layer may import it. tests/test_layers.py holds the rule.
"""
