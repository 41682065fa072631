"""The web layer: the `livesell` command, the Starlette app with its lifespan
and its HTTP and WebSocket endpoints, the security headers and log redaction.
"""
