"""Demo upstreams (a kagent-style controller; a plain a2a-sdk agent with no users) and the share story."""
