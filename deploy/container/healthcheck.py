"""Container HEALTHCHECK: GET https://127.0.0.1:$TAXADDR_PORT/healthz over mTLS.

``healthcheck.py /readyz`` asks the readiness endpoint instead (Kubernetes'
readiness probe). Exit 0 when the server answers 200 with status ``ok`` (``ready``),
1 otherwise. The client
identity comes from ``$TAXADDR_HEALTHCHECK_CERT_DIR`` (``ca.crt``, ``health.crt``,
``health.key``); the server certificate is verified against ``ca.crt`` but its
name is not checked (the probe dials 127.0.0.1, the certificate names the service).
Standard library only: it runs before anything else of the image is trusted.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    if path not in {"/healthz", "/readyz"}:
        print("usage: healthcheck.py [/healthz|/readyz]", file=sys.stderr)
        return 2
    certs = Path(os.environ.get("TAXADDR_HEALTHCHECK_CERT_DIR", "/etc/taxaddr/health"))
    port = int(os.environ.get("TAXADDR_PORT", "8443"))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(certs / "health.crt"), str(certs / "health.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=3)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if response.status != 200 or body.get("status") not in {"ok", "ready"}:
        print(f"unhealthy: HTTP {response.status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
