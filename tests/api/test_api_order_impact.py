"""``taxaddr order impact``: the signed recall list of a stay — exactly the disclosures
inside its scope made before it took effect (before its nbf, or before its own leaf),
in the three formats, verified by ``taxaddr report verify``, with no TIN, name or
address; refused for an unknown order or a lift."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taxaddr.cases.order_issue import order_claims, sign_order
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.crypto.keystore import DEV_ISSUER_ID
from taxaddr.reports import impact, signing
from tests.api.apikit import (
    JANE,
    JOHN,
    SEED_ROWS,
    SEEDED_SECRETS,
    STATUTE,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    run_server,
)

CASE_A, CASE_B = "1:26-cr-10001", "1:26-cr-10002"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("impact-world"))
    w.identity("agent-1")
    w.identity("agent-2", agency="FBI")
    w.identity("judge-clerk", role="admin", agency="IRS")
    w.identity("overseer", role="oversight", agency="TIGTA")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[RunningServer]:
    with run_server(world) as srv:
        yield srv


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(world.keys_dir),
        "TAXADDR_DATABASE_URL": world.settings.database_url,
        "TAXADDR_POLICY_DIR": str(world.settings.policy_dir),
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _disclose(
    server: RunningServer, world: World, who: str, case: str, person: dict[str, str]
) -> Any:
    with server.client(world.identities[who]) as client:
        return client.post("/v1/disclosures", json=body(case, person))


def _apply(server: RunningServer, world: World, claims: dict[str, Any]) -> dict[str, Any]:
    token = sign_order(world.keystore, world.keys_dir, claims)
    with server.client(world.identities["judge-clerk"]) as client:
        answer = client.post("/v1/orders", json={"order": token})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _stay(scope: dict[str, list[str]], nbf: dt.datetime | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    return order_claims(
        issuer=DEV_ISSUER_ID,
        kind="stay",
        number="1:25-cv-04321",
        court="D.D.C.",
        scope=scope,
        now=now,
        nbf=nbf,
    )


def _impact(jti: str, out: Path, *extra: str) -> dict[str, Any]:
    assert run(["order", "impact", jti, "--out", str(out), *extra]) == 0
    return impact.parse(out.read_bytes())


def _no_pii(data: bytes) -> None:
    text = data.decode("latin-1")
    for secret in (*SEEDED_SECRETS, JANE["name"], JOHN["name"], *(r[2] for r in SEED_ROWS)):
        assert secret not in text


@pytest.fixture(scope="module")
def history(server: RunningServer, world: World) -> dict[str, Any]:
    """Disclosures in and out of a stay's scope, the stay, a refusal under it, its lift,
    and a disclosure after the lift."""
    case_a = world.case(number=CASE_A, requesters=["agent-1"])
    case_b = world.case(number=CASE_B, agency="FBI", requesters=["agent-2"])
    ids = {}
    for label, who, case, person in (
        ("a-jane", "agent-1", case_a, JANE),
        ("b-john", "agent-2", case_b, JOHN),
        ("a-john", "agent-1", case_a, JOHN),
    ):
        answer = _disclose(server, world, who, case, person)
        assert answer.status_code == 200, answer.text
        ids[label] = answer.json()["disclosure_id"]
    stay = _stay({"case_numbers": [CASE_A]})
    applied = _apply(server, world, stay)
    refused = _disclose(server, world, "agent-1", case_a, JANE)
    assert refused.json()["error"]["code"] == "disclosure_stayed"
    _apply(
        server,
        world,
        order_claims(
            issuer=DEV_ISSUER_ID, kind="lift", number="1:25-cv-04321-L", court="D.D.C.",
            lifts=stay["jti"],
        ),
    )  # fmt: skip
    after = _disclose(server, world, "agent-1", case_a, JOHN)
    assert after.status_code == 200, after.text
    ids["after-lift"] = after.json()["disclosure_id"]
    return {"ids": ids, "stay": stay, "applied": applied}


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_impact_lists_exactly_the_disclosures_in_scope_before_the_stay(
    history: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"impact.{fmt}"
    listing = _impact(history["stay"]["jti"], out, "--format", fmt)
    ids = history["ids"]
    assert [d["disclosure_id"] for d in listing["disclosures"]] == [ids["a-jane"], ids["a-john"]]
    for entry in listing["disclosures"]:
        assert set(entry) == set(impact.COLUMNS)
        assert (entry["agency"], entry["requester_id"]) == ("ICE-HSI", "agent-1")
        assert (entry["case_number"], entry["statute"]) == (CASE_A, STATUTE)
        assert entry["leaf_index"] < history["applied"]["audit"]["leaf_index"]
    assert listing["order"]["jti"] == history["stay"]["jti"]
    assert listing["order"]["number"] == "1:25-cv-04321"
    assert listing["order"]["scope"] == {
        "agencies": [],
        "statutes": [],
        "case_numbers": [CASE_A],
        "requesters": [],
    }
    assert listing["checkpoint"]["tree_size"] > history["applied"]["audit"]["leaf_index"]
    _no_pii(out.read_bytes())
    assert run(["report", "verify", str(out)]) == 0


@pytest.mark.usefixtures("cli")
def test_an_edited_or_shortened_list_does_not_verify(
    history: dict[str, Any], world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "impact.json"
    listing = _impact(history["stay"]["jti"], out)
    capsys.readouterr()
    # an edit without the report key: the signature
    out.write_bytes(out.read_bytes().replace(b"agent-1", b"agent-9"))
    assert run(["report", "verify", str(out)]) == 1
    assert "signature" in capsys.readouterr().err
    # a shortened list signed with the report key itself: the log disagrees
    dropped = listing["disclosures"][1]["leaf_index"]
    listing["disclosures"] = listing["disclosures"][:1]
    data = impact.render(listing, "json")
    out.write_bytes(data)
    signature = signing.sign(data, world.keystore.report_signing_key())
    signing.signature_path(out).write_bytes(signing.signature_file_text(signature))
    assert run(["report", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "disclosures: differ from the audit log" in err
    assert f"missing leaves [{dropped}]" in err


@pytest.mark.usefixtures("cli")
def test_since_a_later_day_lists_nothing(history: dict[str, Any], tmp_path: Path) -> None:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    listing = _impact(history["stay"]["jti"], tmp_path / "i.json", "--since", tomorrow)
    assert listing["disclosures"] == []
    assert listing["since"] == tomorrow


@pytest.mark.usefixtures("cli")
def test_a_stay_in_force_before_it_was_applied_recalls_what_was_disclosed_meanwhile(
    server: RunningServer, world: World, history: dict[str, Any], tmp_path: Path
) -> None:
    # the court's stay of FBI disclosures is in force from an hour ago; b-john was
    # disclosed (seconds ago) before the service learnt of it: it is recalled too
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    stay = _stay({"agencies": ["FBI"]}, nbf=hour_ago)
    _apply(server, world, stay)
    listing = _impact(stay["jti"], tmp_path / "fbi.json")
    assert [d["disclosure_id"] for d in listing["disclosures"]] == [history["ids"]["b-john"]]
    assert listing["order"]["nbf"] == int(hour_ago.timestamp())


@pytest.mark.usefixtures("cli")
def test_unknown_orders_and_lifts_are_refused(
    history: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    assert run(["order", "impact", "no-such-order", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "order_unknown" in err
    assert not out.exists()
    lift_jti = next(line.split("\t")[0] for line in _listing(capsys) if "\tlift\t" in line)
    assert run(["order", "impact", lift_jti, "--out", str(out)]) == 1
    assert "usage_error" in capsys.readouterr().err
    assert not out.exists()
    assert run(["order", "impact", history["stay"]["jti"], "--out", str(out), "--since", "x"]) != 0
    assert not out.exists()


def _listing(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert run(["order", "list"]) == 0
    return capsys.readouterr().out.splitlines()[1:]


@pytest.mark.usefixtures("cli")
def test_orders_in_force_on_the_dashboard_and_in_the_gauge(
    server: RunningServer, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    stay = _stay({"requesters": ["nobody-at-all"]})
    _apply(server, world, stay)
    in_force = sum(1 for line in _listing(capsys) if line.endswith("\tyes"))
    assert in_force >= 1
    with server.client(world.identities["overseer"]) as client:
        page = client.get("/oversight").text
        exposition = client.get("/metrics").text
    assert f'data-total="orders_in_force">{in_force}</dd>' in page
    assert f"<code>{stay['jti']}</code>" in page
    assert f"taxaddr_orders_in_force {float(in_force)}" in exposition
