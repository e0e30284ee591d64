"""taxaddr.reports."""
