"""taxaddr: per-record, policy-checked, audited disclosure of taxpayer addresses."""

__version__ = "0.2.0"
