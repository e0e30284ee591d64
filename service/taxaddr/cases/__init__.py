"""taxaddr.cases."""
