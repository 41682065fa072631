"""The realtime layer: the hub (local fan-out, per-room sequence numbers, the
pub/sub relay between processes) and viewer admission (identity on join and the
guest-mint rate limit). The transport hook (`server/fastws.py`,
`server/edges.py`, `server/handshake.py`) joins this layer in a later step.
"""
