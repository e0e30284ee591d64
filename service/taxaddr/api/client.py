"""The `taxaddr request` client: one disclosure request over mTLS (httpx)."""

from __future__ import annotations

import json
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from taxaddr.errors import ServiceUnreachable, UsageError


@dataclass(frozen=True)
class ClientAnswer:
    status: int
    body: Any


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """Verify the server against ``ca`` and present ``cert``/``key`` (TLS 1.2+)."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot load client certificate, key or CA ({type(exc).__name__})"
        ) from exc
    return ctx


def parse_address(text: str) -> dict[str, str]:
    """``"street, city, ST zip"`` -> parts; missing parts are left out (the server decides)."""
    parts: dict[str, str] = {}
    pieces = [p.strip() for p in text.rsplit(",", 2)] if text.strip() else []
    if len(pieces) == 3:
        street, city, state_zip = pieces
        parts["street"], parts["city"] = street, city
        words = state_zip.split()
        if words:
            parts["state"] = words[0]
        if len(words) > 1:
            parts["zip"] = words[1]
    elif len(pieces) == 2:
        parts["street"], parts["city"] = pieces
    elif len(pieces) == 1:
        parts["street"] = pieces[0]
    return {k: v for k, v in parts.items() if v}


def canonical_request_id(request_id: str | None) -> str:
    """A new UUID, or the given one in canonical lowercase form (what the server accepts);
    anything that is not a UUID is refused here with one clear line."""
    if request_id is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(request_id.strip()))
    except ValueError:
        raise UsageError(
            "--request-id must be a UUID (e.g. 0b6f3a4e-8c1d-4f2a-9e7b-5d3c2a1f0e9d)"
        ) from None


def build_request_body(
    *,
    case_ref: str,
    tin: str,
    name: str,
    address: str,
    tax_periods: list[str],
    statute: str,
    reason: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    return {
        "request_id": canonical_request_id(request_id),
        "case_reference": case_ref,
        "subject": {"tin": tin, "name": name, "last_known_address": parse_address(address)},
        "tax_periods": tax_periods,
        "statute": statute,
        "reason": reason,
    }


def send_disclosure_request(
    *, url: str, cert: Path, key: Path, ca: Path, body: dict[str, Any], timeout: float = 30.0
) -> ClientAnswer:
    """POST the body to ``URL/v1/disclosures``; any HTTP answer is returned, not raised."""
    ctx = client_ssl_context(cert, key, ca)
    target = url.rstrip("/") + "/v1/disclosures"
    try:
        with httpx.Client(verify=ctx, timeout=timeout) as client:
            response = client.post(target, json=body)
    except httpx.HTTPError as exc:
        raise ServiceUnreachable(
            f"cannot reach {target}: {type(exc).__name__} (TLS handshake or connection failed)"
        ) from None
    try:
        parsed: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = {"status": response.status_code, "body": response.text[:200]}
    return ClientAnswer(response.status_code, parsed)
