"""`address_incomplete` end to end over mTLS: a placeholder, a street without a number or
a ZIP of another state is refused 403 with one denial leaf, and nothing is disclosed."""

from __future__ import annotations

import pytest

from tests.api.apikit import JANE, Identity, RunningServer, World, body, leaves, tree_size


@pytest.mark.parametrize(
    "address",
    [
        {"street": "UNKNOWN", "city": "Washington", "state": "DC", "zip": "20001"},
        {"street": "FAILED TO PROVIDE", "city": "Washington", "state": "DC", "zip": "20001"},
        {"street": "Quill Street NW", "city": "Washington", "state": "DC", "zip": "20001"},
        {"street": "1401 Quill Street NW", "city": "Washington", "state": "VA", "zip": "20001"},
        {"street": "1401 Quill Street NW", "city": "n/a", "state": "DC", "zip": "20001"},
    ],
)
def test_a_stated_address_must_be_an_address(
    server: RunningServer, world: World, agent: Identity, address: dict[str, str]
) -> None:
    payload = body(world.case(), JANE)
    payload["subject"]["last_known_address"] = address
    before = tree_size(world)
    with server.client(agent) as client:
        answer = client.post("/v1/disclosures", json=payload)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "address_incomplete"
    assert "address" not in answer.json()
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "denied"
    assert "address_incomplete" in leaf["reason_codes"]
    text = str(leaf)
    for part in address.values():
        assert part not in text or part in {"DC", "VA"}, part
