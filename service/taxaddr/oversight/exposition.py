"""The Prometheus text exposition served at ``/metrics``.

``*_created`` series are switched off: they double the scrape's size and time
(every labelled counter gets a second series) and no alert or panel uses them.
With several server workers (``PROMETHEUS_MULTIPROC_DIR`` set, as prometheus_client's
multiprocess mode requires) the workers' files are merged into one view.
"""

from __future__ import annotations

import os

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as _multiprocess

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

MEDIA_TYPE = CONTENT_TYPE_LATEST


def registry() -> CollectorRegistry:
    """The default registry, or the multiprocess view when several workers share a dir."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        _multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def exposition() -> bytes:
    return generate_latest(registry())
