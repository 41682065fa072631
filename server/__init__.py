"""livesell: a real-time livestream-selling server."""

__version__ = "0.1.0"
