"""A demo upstream (kagent-style controller + a real a2a-sdk agent) and the share story."""
