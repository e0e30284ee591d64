"""Personal limits end to end over mTLS: ``requester_caseload_exceeded`` and
``requester_volume_exceeded`` at exactly the limit (allowed) and one past it (403, one
denial leaf). The world's policy is the project's, with the data document's limits
lowered (2 open cases, 3 subjects a day) so the boundary is reached in a few requests;
the default limits (50 and 25) are tested at their boundaries in policies/ (both engines).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from taxaddr.api.runtime import engine_for
from taxaddr.audit.admin import cli_actor
from taxaddr.cases.issue import revoke_case
from taxaddr.cases.jws import b64url_decode
from taxaddr.store.importer import import_file
from tests.api.apikit import (
    JANE,
    JOHN,
    REPO,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    leaves,
    run_server,
    tree_size,
)

MAX_OPEN_CASES = 2
MAX_SUBJECTS = 3
# Three more uniquely matching synthetic people (no real persons).
EXTRA = [
    {"tin": "622-10-0001", "name": "ALEX PARK", "street": "12 Elm Street"},
    {"tin": "622-10-0002", "name": "BEA OSEI", "street": "14 Elm Street"},
    {"tin": "622-10-0003", "name": "CY NGUYEN", "street": "16 Elm Street"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("limits-world")
    policy_dir = root / "policies"
    shutil.copytree(REPO / "policies", policy_dir)
    data_file = policy_dir / "data.json"
    data = json.loads(data_file.read_text())
    data["taxaddr"]["policy_data"]["max_open_cases_per_requester"] = MAX_OPEN_CASES
    data["taxaddr"]["policy_data"]["max_subjects_per_requester_per_day"] = MAX_SUBJECTS
    data_file.write_text(json.dumps(data))
    w = build_world(root / "w", policy_dir=policy_dir)
    extra = root / "extra.csv"
    lines = ["tin,name,street,city,state,zip,tax_period,as_of"]
    lines += [
        f"{p['tin']},{p['name']},{p['street']},Washington,DC,20001,2024,2024-04-01" for p in EXTRA
    ]
    extra.write_text("\n".join(lines) + "\n")
    import_file(engine_for(w.settings), w.keystore, extra)
    w.identity("agent-1")
    w.identity("agent-2")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[RunningServer]:
    with run_server(world) as srv:
        yield srv


def _ask(server: RunningServer, world: World, who: str, payload: dict[str, Any]) -> Any:
    before = tree_size(world)
    with server.client(world.identities[who]) as client:
        answer = client.post("/v1/disclosures", json=payload)
    assert tree_size(world) == before + 1  # every answer appends exactly one leaf
    (leaf,) = leaves(world, before, before + 1)
    return answer, leaf


def _person(p: dict[str, str]) -> dict[str, Any]:
    return {
        "tin": p["tin"],
        "name": p["name"],
        "last_known_address": {
            "street": p.get("street", "1401 Quill Street NW"),
            "city": "Washington",
            "state": "DC",
            "zip": "20001",
        },
    }


def test_volume_at_the_limit_is_allowed_and_one_past_is_refused(
    server: RunningServer, world: World
) -> None:
    subjects = [*EXTRA, JANE]
    case = world.case(subjects=[p["tin"] for p in subjects], requesters=["agent-1"])
    for person in subjects[:MAX_SUBJECTS]:  # 1, 2, 3 distinct subjects: the last is the limit
        answer, leaf = _ask(server, world, "agent-1", {**body(case), "subject": _person(person)})
        assert answer.status_code == 200, answer.text
        assert leaf["outcome"] == "disclosed"
    # The same subject again adds no distinct subject: still at the limit, allowed.
    answer, _ = _ask(server, world, "agent-1", {**body(case), "subject": _person(EXTRA[0])})
    assert answer.status_code == 200, answer.text
    # A fourth distinct subject: with it counted, 4 > 3.
    answer, leaf = _ask(server, world, "agent-1", {**body(case), "subject": _person(JANE)})
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "requester_volume_exceeded"
    assert "address" not in answer.json()
    assert leaf["outcome"] == "denied"
    assert leaf["reason_codes"] == ["requester_volume_exceeded"]
    assert JANE["tin"] not in json.dumps(leaf)
    # Another requester's volume is its own.
    other = world.case(subjects=[JANE["tin"]], requesters=["agent-2"], number="1:26-cr-00777")
    answer, _ = _ask(server, world, "agent-2", body(other, JANE))
    assert answer.status_code == 200, answer.text


def test_caseload_at_the_limit_is_allowed_and_one_past_is_refused(
    server: RunningServer, world: World
) -> None:
    def case(n: int) -> str:
        return world.case(number=f"1:26-cr-0100{n}", requesters=["agent-2", "agent-3"])

    # Start from no open case (the other test may have left agent-2 one).
    for jti in _open_cases(world, "agent-2"):
        revoke_case(engine_for(world.settings), jti, actor=cli_actor())
    first, second, third = case(1), case(2), case(3)
    answer, _ = _ask(server, world, "agent-2", body(first, JOHN))
    assert answer.status_code == 200, answer.text
    # The second case: with it counted, 2 open cases == the limit.
    answer, leaf = _ask(server, world, "agent-2", body(second, JOHN))
    assert answer.status_code == 200, answer.text
    # The same case again is not a new case.
    answer, _ = _ask(server, world, "agent-2", body(second, JOHN))
    assert answer.status_code == 200, answer.text
    # Each allowed case was recorded for every requester it names, once.
    assert sorted(_open_cases(world, "agent-3")).count(_jti(second)) == 1
    assert _jti(first) in _open_cases(world, "agent-3")
    # A third case: with it counted, 3 > 2.
    answer, leaf = _ask(server, world, "agent-2", body(third, JOHN))
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "requester_caseload_exceeded"
    assert leaf["reason_codes"] == ["requester_caseload_exceeded"]
    # A refused case is not "seen": it does not count. Revoking one open case frees a place.
    revoke_case(engine_for(world.settings), _jti(first), actor=cli_actor())
    answer, _ = _ask(server, world, "agent-2", body(third, JOHN))
    assert answer.status_code == 200, answer.text


def _jti(token: str) -> str:
    return str(json.loads(b64url_decode(token.split(".")[1]))["jti"])


def _open_cases(world: World, requester_id: str) -> list[str]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from taxaddr.db.schema import requester_cases

    with Session(engine_for(world.settings)) as session:
        rows = session.execute(
            select(requester_cases.c.jti).where(requester_cases.c.requester_id == requester_id)
        ).all()
    return [r[0] for r in rows]
