"""The verified-token cache never outlives a revocation, an issuer removal or a key change.

A running server remembers the signature-verified claims of case references it has
seen (by SHA-256); these tests prove that ``taxaddr case revoke`` and ``taxaddr
issuer remove`` still take effect on the very next request for a cached token, and
that a cached token is verified afresh when the trusted key is not the one it was
verified under.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from taxaddr.api.runtime import engine_for
from taxaddr.cases.verify import VERIFIED_TOKENS, verify_case_reference
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.errors import CaseSignatureInvalid
from tests.api.apikit import (
    Identity,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    run_server,
)


@pytest.fixture
def cached_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A fresh world per test (an issuer removal must not leak), the CLI pointed at it."""
    w = build_world(tmp_path / "world")
    w.identity("agent-1")
    monkeypatch.setenv("TAXADDR_ENV", "test")
    monkeypatch.setenv("TAXADDR_DATABASE_URL", w.settings.database_url)
    monkeypatch.setenv("TAXADDR_KEYS_DIR", str(w.keys_dir))
    monkeypatch.setenv("TAXADDR_POLICY_DIR", str(w.settings.policy_dir))
    get_settings.cache_clear()
    yield w
    get_settings.cache_clear()
    cleanup()


def post(server: RunningServer, ident: Identity, case: str) -> httpx.Response:
    with server.client(ident) as client:
        return client.post("/v1/disclosures", json=body(case))


def jti_of(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def is_cached(token: str) -> bool:
    return VERIFIED_TOKENS.get(hashlib.sha256(token.encode()).digest()) is not None


def test_cached_token_is_refused_after_case_revoke(cached_world: World) -> None:
    case = cached_world.case()
    agent = cached_world.identities["agent-1"]
    with run_server(cached_world) as server:
        assert post(server, agent, case).status_code == 200
        assert is_cached(case)
        assert post(server, agent, case).status_code == 200  # served through the cache
        assert run(["case", "revoke", jti_of(case)]) == 0
        r = post(server, agent, case)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "case_revoked"


def test_cached_token_is_refused_after_issuer_remove(cached_world: World) -> None:
    case = cached_world.case()
    agent = cached_world.identities["agent-1"]
    with run_server(cached_world) as server:
        assert post(server, agent, case).status_code == 200
        assert is_cached(case)
        assert run(["issuer", "remove", "--id", "dev-court"]) == 0
        r = post(server, agent, case)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "case_issuer_untrusted"


def test_cached_token_is_verified_afresh_under_another_key(tmp_path: Path) -> None:
    """Same issuer id and kid, other public key (another deployment's dev keys): the
    token verified under the first key is refused under the second, cache or not."""
    first = build_world(tmp_path / "first")
    second = build_world(tmp_path / "second")
    try:
        case = first.case()
        with Session(engine_for(first.settings)) as session:
            verify_case_reference(case, session=session, settings=first.settings)
        assert is_cached(case)
        with (
            Session(engine_for(second.settings)) as session,
            pytest.raises(CaseSignatureInvalid),
        ):
            verify_case_reference(case, session=session, settings=second.settings)
    finally:
        cleanup()
