"""taxaddr.audit."""
