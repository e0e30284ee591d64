"""The OPA server engine: OPA's REST Data API through ``opa-python-client``.

``POST {OPA_URL}/v1/data/taxaddr/disclosure/decision?provenance=true`` with
``{"input": …}``; OPA answers 200 ``{"result": …, "provenance": …}``, and no
``result`` key when the decision is undefined. Fail closed: a timeout, a
connection error, a non-200 status, a body that is not JSON, a missing or
malformed result, or an answer that arrives after the deadline all raise
:class:`~taxaddr.errors.PolicyUnavailable`.

The client gets no retries (a retry cannot fit in the 250 ms budget) and the
timeout for connect and for each read. ``requests`` bounds each socket
operation, not the whole exchange, so an answer that arrives after the deadline
is refused as well.

The policy version is the revision of the bundle that answered, read from the
response's provenance (``provenance.bundles.<name>.revision``; bundles built by
``taxaddr policy bundle`` carry the embedded engine's hash as revision).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from taxaddr.errors import ConfigError, PolicyUnavailable
from taxaddr.policy.engine import PACKAGE, RULE, Decision, observed, parse_result

BUNDLE_NAME = "taxaddr"
UNBUNDLED = "opa:unbundled"


class OpaPolicyEngine:
    """A remote OPA server; one HTTP client (and connection pool) per thread."""

    name = "opa"

    def __init__(self, url: str, timeout_ms: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("TAXADDR_OPA_URL must be http(s)://host[:port]")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ConfigError("TAXADDR_OPA_URL must not carry a path (the API is at /v1/data)")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._ssl = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._ssl else 80)
        self.timeout_s = timeout_ms / 1000.0
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = OpaClient(
                host=self._host,
                port=self._port,
                ssl=self._ssl,
                retries=0,
                timeout=self.timeout_s,
            )
            self._local.client = client
        return client

    def _evaluate(self, document: object) -> Decision:
        payload = dict(document) if isinstance(document, Mapping) else document
        deadline = time.monotonic() + self.timeout_s
        try:
            body = self._client().query_rule(
                input_data=payload,
                package_path=PACKAGE,
                rule_name=RULE,
                query_params={"provenance": "true"},
            )
        except requests.Timeout:
            raise PolicyUnavailable(
                f"OPA did not answer within {self.timeout_s * 1000:.0f} ms"
            ) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise PolicyUnavailable(f"OPA answered HTTP {status}") from None
        except requests.RequestException as exc:
            raise PolicyUnavailable(f"OPA unreachable ({type(exc).__name__})") from None
        except (ValueError, TypeError):
            raise PolicyUnavailable("OPA answer is not JSON") from None
        if time.monotonic() > deadline:
            raise PolicyUnavailable(f"OPA did not answer within {self.timeout_s * 1000:.0f} ms")
        if not isinstance(body, dict):
            raise PolicyUnavailable("OPA answer is not a JSON object")
        if "result" not in body:
            raise PolicyUnavailable("OPA decision is undefined (policy not loaded?)")
        return parse_result(body["result"], _revision(body.get("provenance")))

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Ask OPA for the decision; any failure is PolicyUnavailable."""
        return observed(self.name, lambda: self._evaluate(input))

    def check(self) -> None:
        """OPA is healthy with its bundles activated, and the decision is defined."""
        if not self._client().check_health(query={"bundles": "true"}):
            raise PolicyUnavailable("OPA is not healthy (or its bundle is not activated)")
        if self._evaluate({}).allow:
            raise PolicyUnavailable("OPA policy allowed an empty input")


def _revision(provenance: object) -> str:
    """The answering bundle's revision: ``taxaddr``'s, or the only bundle's."""
    if not isinstance(provenance, dict):
        return UNBUNDLED
    bundles = provenance.get("bundles")
    if not isinstance(bundles, dict) or not bundles:
        return UNBUNDLED
    chosen = bundles.get(BUNDLE_NAME)
    if chosen is None and len(bundles) == 1:
        chosen = next(iter(bundles.values()))
    revision = chosen.get("revision") if isinstance(chosen, dict) else None
    return revision if isinstance(revision, str) and revision else UNBUNDLED
