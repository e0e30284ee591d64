"""The production topology from real processes on one machine (``make cluster``)."""

from deploy.cluster.client import Outcome, disclosure_body, run_load, send
from deploy.cluster.cluster import Cluster, person, write_load_policy

__all__ = [
    "Cluster",
    "Outcome",
    "disclosure_body",
    "person",
    "run_load",
    "send",
    "write_load_policy",
]
