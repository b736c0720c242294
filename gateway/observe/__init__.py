"""Observability: Prometheus metrics and structlog logging."""
