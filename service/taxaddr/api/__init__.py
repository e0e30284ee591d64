"""taxaddr.api."""
