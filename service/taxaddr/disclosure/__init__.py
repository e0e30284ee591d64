"""The disclosure decision core: the nine steps, identity, the requester registry, receipts.

Nothing here knows HTTP, the access log or Prometheus: :mod:`taxaddr.api` maps what
the core returns to status codes, envelopes, log fields and metrics.
"""
