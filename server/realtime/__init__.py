"""The realtime layer: the hub (local fan-out: rooms, viewer connections,
coalescing, behind and resync), the broker (the pub/sub relay between processes
and the event-log reads, over `server.state.events`), viewer admission
(identity on join and the guest-mint rate limit) and the transport hook:
`fastws` (pre-encoded frames straight to uvicorn's WebSocket transport), `edges`
(the bounded HTTP edge) and `handshake` (the credentials a viewer offers).
"""
