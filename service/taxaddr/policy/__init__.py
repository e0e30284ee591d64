"""taxaddr.policy."""
