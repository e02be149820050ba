"""partysub: a self-hosted pub/sub daemon compatible with PartySocket clients."""

__version__ = "0.1.0"
