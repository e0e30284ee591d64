"""taxaddr.store."""
