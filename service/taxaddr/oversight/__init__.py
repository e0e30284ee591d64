"""taxaddr.oversight."""
