"""share-gateway: an authorization reverse proxy for sharing agent chat sessions."""

__version__ = "0.1.0"
