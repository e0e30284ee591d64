"""Three replicas + HAProxy + PostgreSQL + two OPA servers + Prometheus, as real processes,
under load and faults (deploy/cluster; issue 18). One cluster for the module; the tests
run in file order in one xdist worker, each bounded (127.0.0.1 only, seconds of load),
and leave the cluster whole for the next (a killed part is started again)."""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
from collections.abc import Iterator

import pytest

from deploy.cluster import Cluster, Outcome, disclosure_body, run_load, send
from tests.policy.real_opa import require_opa

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

RATE_LIMIT = 300  # per minute and identity: the load tests spread over 22 identities
IDENTITIES = 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_opa()
    c = Cluster.create(
        replicas=3, policy="opa", rate_limit=RATE_LIMIT, identities=IDENTITIES
    ).start()
    try:
        yield c
    finally:
        c.stop()


def jti_of(token: str) -> str:
    body = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["jti"])


def counts(outcomes: list[Outcome]) -> collections.Counter[tuple[int, str | None]]:
    return collections.Counter((o.status, o.code) for o in outcomes)


def leaves(c: Cluster) -> dict[int, bytes]:
    return {int(i): bytes(h) for i, h in c.psql("SELECT leaf_index, leaf_hash FROM audit_leaves")}


def assert_log_whole(c: Cluster, oks: list[Outcome]) -> None:
    """Every 200 has its committed leaf; indices gapless; ``audit verify`` passes."""
    stored = leaves(c)
    assert sorted(stored) == list(range(len(stored))), "a gap in the leaf indices"
    missing = [o.leaf_index for o in oks if o.leaf_index not in stored]
    assert not missing, f"200 answers without a committed leaf: {missing[:5]}"
    verify = c.taxaddr("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def load_ids(c: Cluster) -> list[str]:
    return c.state.ids[:-2]  # the last two identities belong to the rate and revoke tests


def prometheus_by_outcome(c: Cluster) -> dict[str, float]:
    rows = c.prometheus_query("sum by (outcome) (taxaddr_disclosure_requests_total)")
    return {r["metric"].get("outcome", ""): float(r["value"][1]) for r in rows}


def test_case_quota_holds_across_replicas_and_metrics_add_up(cluster: Cluster) -> None:
    c = cluster
    case = c.issue_case(max_disclosures=5)
    c.scraped_since(time.time())
    before_metrics = prometheus_by_outcome(c)
    start = threading.Barrier(60)
    results: list[Outcome] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        start.wait()
        out = send(c, c.state.lb_port, load_ids(c)[n % 20], disclosure_body(case, n % 50))
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seen = counts(results)
    assert seen[(200, None)] == 5, seen
    assert seen[(403, "case_quota_exhausted")] == 55, seen
    jti = jti_of(case)
    assert c.psql("SELECT count(*) FROM audit_leaves WHERE case_jti = %s", jti) == [(60,)]
    assert c.psql("SELECT disclosures_used FROM case_references WHERE jti = %s", jti) == [(5,)]
    assert_log_whole(c, [o for o in results if o.status == 200])

    # Prometheus scrapes each replica; the sums over the replicas are the deployment's
    c.scraped_since(time.time())
    after = prometheus_by_outcome(c)
    assert after.get("disclosed", 0) - before_metrics.get("disclosed", 0) == 5
    assert after.get("denied", 0) - before_metrics.get("denied", 0) == 55
    per_replica = c.prometheus_query(
        'sum by (instance) (taxaddr_disclosure_requests_total{outcome="denied"})'
    )
    assert len(per_replica) == 3  # every replica answered some of them


def test_rate_limit_holds_for_the_whole_deployment(cluster: Cluster) -> None:
    c = cluster
    identity = c.state.ids[-2]
    results: list[Outcome] = []
    lock = threading.Lock()
    started = time.monotonic()

    def client(n: int) -> None:
        for _ in range(40):  # a refused body still spends a token (422, no leaf)
            out = send(c, c.state.lb_port, identity, b"{}")
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    seen = counts(results)
    granted = sum(n for (status, _), n in seen.items() if status != 429)
    assert set(seen) <= {(422, "request_invalid"), (429, "rate_limited")}, seen
    # a bucket of RATE_LIMIT plus RATE_LIMIT/60 a second, for all three replicas together
    assert RATE_LIMIT <= granted <= RATE_LIMIT + RATE_LIMIT / 60 * elapsed + 1, (seen, elapsed)
    assert seen[(429, "rate_limited")] == 400 - granted


def test_revocations_reach_every_replica_on_the_next_request(cluster: Cluster) -> None:
    c = cluster
    identity = c.state.ids[-1]
    case = c.issue_case(max_disclosures=100)
    ports = c.state.replica_ports
    # warm every replica's caches (case token, identity, policy) with this case and identity
    for port in ports:
        assert send(c, port, identity, disclosure_body(case, 1)).status == 200
    c.taxaddr("case", "revoke", jti_of(case))
    for port in ports:
        out = send(c, port, identity, disclosure_body(case, 1))
        assert (out.status, out.code) == (403, "case_revoked")
    other = c.issue_case(max_disclosures=100)
    for port in ports:
        assert send(c, port, identity, disclosure_body(other, 2)).status == 200
    c.taxaddr("requester", "revoke", identity)
    for port in ports:
        out = send(c, port, identity, disclosure_body(other, 2))
        assert (out.status, out.code) == (403, "requester_revoked")


def test_kill_9_of_a_replica_during_load_loses_no_leaf(cluster: Cluster) -> None:
    c = cluster
    case = c.state.cases["load"]
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(1.5)
        killed_at.append(time.monotonic())
        c.kill("replica-0")

    outcomes = run_load(
        c,
        port=c.state.lb_port,
        case_reference=case,
        threads=8,
        duration=5.0,
        during=kill,
        identities=load_ids(c),
    )
    oks = [o for o in outcomes if o.status == 200]
    seen = counts(outcomes)
    # only requests the killed replica held fail (no answer); nothing else
    assert set(seen) <= {(200, None), (0, None)}, seen
    assert seen[(0, None)] <= 8, seen  # at most one in flight per client
    assert_log_whole(c, oks)
    jti = jti_of(case)
    used = c.psql("SELECT disclosures_used FROM case_references WHERE jti = %s", jti)[0][0]
    disclosed = c.psql(
        "SELECT count(*) FROM audit_leaves WHERE case_jti = %s AND outcome = 'disclosed'", jti
    )[0][0]
    assert used == disclosed
    # the other replicas kept answering after the kill
    assert sum(1 for o in oks if o.started > killed_at[0] + 0.5) >= 10
    c.replica_start(0)
    c.wait_in_rotation(0)


def test_postgresql_outage_is_503_and_heals_by_itself(cluster: Cluster) -> None:
    c = cluster
    marks: dict[str, float] = {}

    def outage() -> None:
        time.sleep(1.0)
        marks["down"] = time.monotonic()
        c.pg_stop(mode="fast")
        time.sleep(3.0)
        c.pg_start()
        marks["up"] = time.monotonic()

    outcomes = run_load(
        c,
        port=c.state.lb_port,
        case_reference=c.state.cases["load"],
        threads=6,
        duration=9.0,
        during=outage,
        pause=0.05,
        identities=load_ids(c),
    )
    seen = counts(outcomes)
    assert set(seen) <= {(200, None), (503, "database_unavailable")}, seen
    assert seen[(503, "database_unavailable")] >= 1  # the outage was seen
    healed = [o for o in outcomes if o.status == 200 and o.started > marks["up"]]
    assert healed, "no 200 after PostgreSQL came back"
    assert all(o.status == 200 for o in outcomes if o.started > marks["up"] + 2.0), seen
    assert_log_whole(c, [o for o in outcomes if o.status == 200])


def test_one_opa_down_is_served_by_the_other_both_down_is_503(cluster: Cluster) -> None:
    c = cluster
    case = c.state.cases["load"]
    c.kill("opa-0")
    first = run_load(
        c, port=c.state.lb_port, case_reference=case, threads=4, requests=24, identities=load_ids(c)
    )
    assert counts(first) == {(200, None): 24}
    c.kill("opa-1")
    second = run_load(
        c, port=c.state.lb_port, case_reference=case, threads=4, requests=12, identities=load_ids(c)
    )
    assert counts(second) == {(503, "policy_unavailable"): 12}
    for n in range(2):
        c.opa_start(n)
    deadline = time.monotonic() + 10
    while not all(s["status"].startswith("UP") for s in c.backend_status("opa").values()):
        assert time.monotonic() < deadline, c.backend_status("opa")
        time.sleep(0.1)
    third = run_load(
        c, port=c.state.lb_port, case_reference=case, threads=4, requests=12, identities=load_ids(c)
    )
    assert counts(third) == {(200, None): 12}


def test_rolling_restart_fails_no_request(cluster: Cluster) -> None:
    c = cluster
    stop = threading.Event()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        ids = load_ids(c)
        while not stop.is_set():
            n += 4  # this client's next identity: none of them nears its rate limit
            body = disclosure_body(c.state.cases["load"], n % 50)
            out = send(c, c.state.lb_port, ids[n % len(ids)], body)
            with lock:
                outcomes.append(out)
            time.sleep(0.05)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in clients:
        t.start()
    try:
        for n in range(c.state.replicas):  # drain in HAProxy, SIGTERM, start, back in
            c.rolling_restart(n)
    finally:
        stop.set()
        for t in clients:
            t.join(30)
    assert len(outcomes) >= 20
    assert counts(outcomes) == {(200, None): len(outcomes)}, counts(outcomes)
    assert_log_whole(c, outcomes)


def test_a_court_stay_reaches_every_replica_and_its_lift_too(cluster: Cluster) -> None:
    c = cluster
    case = c.issue_case(max_disclosures=100)
    number = json.loads(base64.urlsafe_b64decode(case.split(".")[1] + "=="))["case"]["number"]
    identity = load_ids(c)[1]
    for port in c.state.replica_ports:  # warm every replica with this case
        assert send(c, port, identity, disclosure_body(case, 4)).status == 200
    order = (
        "order",
        "issue",
        "--issuer",
        "dev-court",
        "--number",
        "1:25-cv-7",
        "--court",
        "D.D.C.",
    )
    stay = c.taxaddr(*order, "--kind", "stay", "--case-number", number).stdout.strip()
    stay_jti = json.loads(c.taxaddr("order", "apply", stay).stdout)["jti"]
    for port in c.state.replica_ports:
        out = send(c, port, identity, disclosure_body(case, 4))
        assert (out.status, out.code) == (403, "disclosure_stayed")
    # other cases are not in the stay's scope
    assert (
        send(c, c.state.lb_port, identity, disclosure_body(c.state.cases["load"], 4)).status == 200
    )
    lift = c.taxaddr(*order, "--kind", "lift", "--lifts", stay_jti).stdout.strip()
    c.taxaddr("order", "apply", lift)
    for port in c.state.replica_ports:
        assert send(c, port, identity, disclosure_body(case, 4)).status == 200


def test_issuer_removal_reaches_every_replica(cluster: Cluster) -> None:
    c = cluster  # last: afterwards no case reference of dev-court is honoured
    case = c.state.cases["load"]
    identity = load_ids(c)[0]
    for port in c.state.replica_ports:
        assert send(c, port, identity, disclosure_body(case, 3)).status == 200
    c.taxaddr("issuer", "remove", "--id", "dev-court")
    for port in c.state.replica_ports:
        out = send(c, port, identity, disclosure_body(case, 3))
        assert (out.status, out.code) == (403, "case_issuer_untrusted")
