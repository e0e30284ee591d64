"""A running taxaddr (real mTLS server from tests/api/apikit.py) with scripted traffic."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.api.apikit import (
    AMBIGUOUS,
    JANE,
    JOHN,
    SEEDED_SECRETS,
    UNKNOWN,
    Identity,
    RunningServer,
    World,
    body,
    tree_size,
)

__all__ = [
    "SEEDED_SECRETS",
    "Identity",
    "RunningServer",
    "Script",
    "World",
    "run_script",
    "sample",
]

CASE_NUMBER = "1:26-cr-00123"


@dataclass(frozen=True)
class Script:
    """What :func:`run_script` did, as the oversight views must count it."""

    requests: int = 7
    disclosed: int = 2
    denied: int = 3
    no_match: int = 2
    reasons: tuple[str, ...] = (
        "statute_not_criminal",
        "reason_insufficient",
        "proceeding_not_criminal",
    )
    # /metrics as the monitor saw it just before the script (counters are process-wide).
    metrics_before: str = field(default="", repr=False)
    # Leaves in the log after the script: its requests plus the trust changes that set
    # the world up (requester and issuer registrations, the policy's first use).
    leaves: int = 7


def run_script(server: RunningServer, agent: Identity) -> Script:
    """Two disclosures, two no-unique-matches and three refusals, all for agency ICE-HSI."""
    world = server.world
    with server.client(world.identities["prometheus"]) as client:
        before = client.get("/metrics").text
    leaves_before = tree_size(world)
    case_ref = world.case(requesters=[agent.id])
    civil_ref = world.case(requesters=[agent.id], proceeding="civil")
    expected = [
        (body(case_ref, JANE), 200),
        (body(case_ref, JOHN), 200),
        (body(case_ref, UNKNOWN), 404),
        (body(case_ref, AMBIGUOUS), 404),
        (body(case_ref, JANE, statute="8 U.S.C. 1227"), 403),
        (body(case_ref, JANE, reason="immigration enforcement"), 403),
        (body(civil_ref, JOHN), 403),
    ]
    with server.client(agent) as client:
        for payload, status in expected:
            answer = client.post("/v1/disclosures", json=payload)
            assert answer.status_code == status, answer.text
    return Script(metrics_before=before, leaves=leaves_before + Script.requests)


def sample(exposition: str, series: str) -> float:
    """The value of one series (``name{labels}`` exactly as exposed) in Prometheus text."""
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0
