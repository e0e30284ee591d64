"""Signed policy bundles and masked decision logs, under real OPA.

OPA runs as documented in ``deploy/opa/config-local.yaml``: the bundle comes
from a local bundle service (a static HTTP server), the verification key is
set from a file (``--set-file keys.taxaddr-policy.key=…``), decision logs go
to the console through ``deploy/opa/mask.rego``. A bundle signed by the
policy key activates; an unsigned bundle, one with a file changed after
signing and one signed by another key are refused (no active bundle), and
the service's adapter then fails closed (``PolicyUnavailable``, a 503), never
a decision.
"""

from __future__ import annotations

import base64
import functools
import gzip
import http.server
import io
import json
import random
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from taxaddr.config import Settings
from taxaddr.errors import PolicyUnavailable, UsageError
from taxaddr.policy.bundle import BundleSigningKey, bundle_files, file_hash, write_bundle
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.opa import OpaPolicyEngine
from taxaddr.policy.sources import load_sources
from tests.api.apikit import Identity, World, body, build_world, cleanup, run_server, tree_size
from tests.policy.real_opa import RealOpa, opa_with_bundle, require_opa
from tests.policy.test_opa_real import cli_bundle

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
OPA_DIR = REPO / "deploy" / "opa"
KEY_ID = "taxaddr-policy"
VALID = json.loads((POLICY_DIR / "decision_table.json").read_text())["cases"][0]["input"]
BUNDLE_NAME = "taxaddr-policy.tar.gz"

pytestmark = pytest.mark.xdist_group("real_opa_bundles")


def _pem_pair(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, where: Path) -> Path:
    """Write the private key (PEM) and its public key; return the public key's path."""
    where.with_suffix(".pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = where.with_suffix(".pub.pem")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


@pytest.fixture(scope="module")
def opa_binary() -> str:
    return require_opa()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("policy-keys")
    policy = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    policy_pub = _pem_pair(policy, root / "policy")
    _pem_pair(other, root / "other")
    return {"policy_pub": policy_pub, "policy": root / "policy.pem", "other": root / "other.pem"}


@pytest.fixture(scope="module")
def bundle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A static bundle service: (directory it serves, base URL)."""
    root = tmp_path_factory.mktemp("bundle-service")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def _start_opa(
    binary: str, workdir: Path, service_url: str, public_key: Path, *, wait_bundle: bool
) -> RealOpa:
    """OPA exactly as config-local.yaml documents it, pointed at the test bundle service."""
    opa = RealOpa(
        binary,
        workdir,
        [
            "--config-file",
            str(OPA_DIR / "config-local.yaml"),
            "--set",
            f"services.local-bundles.url={service_url}",
            "--set",
            "bundles.taxaddr.polling.min_delay_seconds=1",
            "--set",
            "bundles.taxaddr.polling.max_delay_seconds=2",
            "--set-file",
            f"keys.{KEY_ID}.key={public_key}",
            str(OPA_DIR / "mask.rego"),
        ],
    )
    return opa.start(wait_bundle=wait_bundle)


def _publish(root: Path, signer: BundleSigningKey | None, *, tamper: bool = False) -> Path:
    out = root / BUNDLE_NAME
    write_bundle(load_sources(POLICY_DIR), out, signer)
    if tamper:
        _change_one_file(out)
    return out


def _change_one_file(bundle: Path) -> None:
    """Rewrite the archive with the data document's min_reason_length changed (after signing)."""
    with tarfile.open(bundle, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]  # type: ignore[union-attr]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member, content in members:
            data = content
            if member.name.endswith("policy_data/data.json"):
                doc = json.loads(content)
                doc["min_reason_length"] = 1
                data = json.dumps(doc).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    bundle.write_bytes(gzip.compress(raw.getvalue()))


# What OPA 0.61 logs when it refuses each bundle (its verification, not a fetch error).
REFUSAL = {
    "unsigned": "bundle missing .signatures.json file",
    "changed_after_signing": "digest mismatch",
    "other_key": "verification error",
}


def _wait_refused(opa: RealOpa, why: str, seconds: float = 10.0) -> None:
    """OPA fetched the bundle and refused it for ``why``; no bundle is active."""
    deadline = time.monotonic() + seconds
    failures: list[str] = []
    while time.monotonic() < deadline and not failures:
        failures = [
            str(entry.get("msg"))
            for entry in _log_entries(opa)
            if entry.get("name") == "taxaddr"
            and str(entry.get("msg", "")).startswith("Bundle load failed")
        ]
        time.sleep(0.1)
    assert failures, f"OPA logged no refused bundle: {opa.log_tail()}"
    assert all(why in msg for msg in failures), failures
    assert "Bundle loaded and activated" not in opa.log_text()
    assert opa.health(bundles=True) != 200
    assert opa.health(bundles=False) == 200  # OPA itself runs


def _log_entries(opa: RealOpa) -> list[dict[str, object]]:
    entries = []
    for line in opa.log_text().splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("signed-world"))
    w.identity("agent-1")
    yield w
    cleanup()


def _opa_settings(world: World, opa: RealOpa) -> Settings:
    return world.settings.model_copy(
        update={"policy_engine": "opa", "opa_url": opa.url, "opa_timeout_ms": 2000}
    )


def _random_json_text(rng: random.Random, depth: int = 0) -> str:
    """JSON text with the spellings OPA's canonical hash must keep or normalize."""
    numbers = ["0", "-0", "1.50", "1E+5", "2e-3", "-12.0", "123456789012345678901234567890"]
    pieces = [
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0001",
        "\\u001f",
        "\\u007f",
        "\\u2028",
        "\\u2029",
        "\\ud800",
        "\\ud83d\\ude00",
        "\\/",
        '\\"',
        "\\\\",
        "<&>",
        "é",
        "😀",
        " ",
        "ß",
        "a",
        " ",
    ]

    def text() -> str:
        return '"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) + '"'

    kind = rng.randint(0, 5) if depth < 3 else rng.randint(0, 2)
    if kind == 0:
        return rng.choice(numbers)
    if kind == 1:
        return text()
    if kind == 2:
        return rng.choice(["true", "false", "null"])
    if kind == 3:
        items = [_random_json_text(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return "[ " + " ,".join(items) + "]"
    members = [
        f"{text()} :\n {_random_json_text(rng, depth + 1)}" for _ in range(rng.randint(0, 4))
    ]
    return "{" + ",  ".join(members) + "}"


def test_signatures_hash_files_as_opa_sign_does(
    opa_binary: str, keys: dict[str, Path], tmp_path: Path
) -> None:
    # A second implementation: `opa sign` over the same files gives the same hashes,
    # for the real bundle and for 150 generated data documents (every escape and
    # number spelling OPA's canonical form keeps or rewrites), a non-data *.json
    # file (hashed over its bytes) and a .manifest written with odd whitespace.
    files, _ = bundle_files(load_sources(POLICY_DIR))
    rng = random.Random(15)
    for index in range(150):
        body_text = "{" + f'"k{index}": ' + _random_json_text(rng) + "}"
        files[f"gen/d{index}/data.json"] = body_text.encode()
    files["gen/other/notes.json"] = b'{"b": 1,   "a": "\\u003c"}\n'
    tree = tmp_path / "tree"
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content)
    subprocess.run(
        [opa_binary, "sign", "--signing-key", str(keys["policy"]), "--bundle", ".", "-o", ".."],
        cwd=tree,
        check=True,
        capture_output=True,
        timeout=60,
    )
    token = json.loads((tmp_path / ".signatures.json").read_text())["signatures"][0]
    body = token.split(".")[1]
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    theirs = {f["name"]: f["hash"] for f in payload["files"]}
    ours = {name: file_hash(name, content) for name, content in files.items()}
    differing = sorted(name for name in files if theirs.get(name) != ours[name])
    assert set(theirs) == set(ours)
    assert not differing, [(name, files[name].decode()) for name in differing[:3]]


def test_yaml_data_is_refused_rather_than_hashed_wrongly() -> None:
    with pytest.raises(UsageError, match="YAML"):
        file_hash("a/data.yaml", b"x: 1\n")


def test_cli_signed_bundle_verifies_under_opa_verification_key_flags(
    opa_binary: str, keys: dict[str, Path], tmp_path: Path
) -> None:
    # The documented command line: `taxaddr policy bundle --signing-key --key-id`, and
    # `opa run --bundle … --verification-key … --verification-key-id …` activates it.
    out = tmp_path / "signed.tar.gz"
    done = cli_bundle(out, "--signing-key", str(keys["policy"]), "--key-id", KEY_ID)
    assert done.returncode == 0, done.stderr
    assert f"signed, key id {KEY_ID}" in done.stdout
    with tarfile.open(out, "r:gz") as tar:
        signatures = json.loads(tar.extractfile(".signatures.json").read())  # type: ignore[union-attr]
    header, payload = (
        json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in signatures["signatures"][0].split(".")[:2]
    )
    assert header["alg"] == "RS256"
    assert payload["keyid"] == KEY_ID
    assert all(f["algorithm"] == "SHA-256" for f in payload["files"])
    opa = opa_with_bundle(
        opa_binary,
        tmp_path,
        out,
        "--verification-key",
        str(keys["policy_pub"]),
        "--verification-key-id",
        KEY_ID,
    ).start(wait_bundle=True)
    try:
        decision = OpaPolicyEngine(opa.url, timeout_ms=3000).decide(VALID)
        assert decision.allow is True
        assert decision.policy_version == EmbeddedPolicyEngine(POLICY_DIR).policy_version
    finally:
        opa.stop()
    # the same OPA with another key refuses the bundle from disk: it does not serve
    refusing = opa_with_bundle(
        opa_binary,
        tmp_path,
        out,
        "--verification-key",
        str(tmp_path / "wrong.pub.pem"),
        "--verification-key-id",
        KEY_ID,
    )
    _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048), tmp_path / "wrong")
    with pytest.raises(RuntimeError, match="verification error"):
        refusing.start(wait_bundle=True, timeout=15)
    refusing.stop()


def test_cli_needs_key_and_key_id_together(tmp_path: Path, keys: dict[str, Path]) -> None:
    done = cli_bundle(tmp_path / "x.tar.gz", "--signing-key", str(keys["policy"]))
    assert done.returncode != 0
    assert "--signing-key and --key-id go together" in done.stderr + done.stdout
    assert not (tmp_path / "x.tar.gz").exists()


def test_signed_bundle_activates_and_decides(
    opa_binary: str,
    keys: dict[str, Path],
    bundle_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, url = bundle_server
    _publish(root, BundleSigningKey.load(keys["policy"], KEY_ID))
    opa = _start_opa(opa_binary, tmp_path, url, keys["policy_pub"], wait_bundle=True)
    try:
        engine = OpaPolicyEngine(opa.url, timeout_ms=3000)
        engine.check()  # /health?bundles and a defined, denying decision
        decision = engine.decide(VALID)
        assert decision.allow is True
        assert decision.policy_version == EmbeddedPolicyEngine(POLICY_DIR).policy_version
    finally:
        opa.stop()


@pytest.mark.parametrize("variant", ["unsigned", "changed_after_signing", "other_key"])
def test_bundles_that_do_not_verify_are_refused(
    variant: str,
    *,
    opa_binary: str,
    keys: dict[str, Path],
    bundle_server: tuple[Path, str],
    world: World,
    tmp_path: Path,
) -> None:
    root, url = bundle_server
    if variant == "unsigned":
        _publish(root, None)
    elif variant == "changed_after_signing":
        _publish(root, BundleSigningKey.load(keys["policy"], KEY_ID), tamper=True)
    else:
        _publish(root, BundleSigningKey.load(keys["other"], KEY_ID))
    opa = _start_opa(opa_binary, tmp_path, url, keys["policy_pub"], wait_bundle=False)
    try:
        _wait_refused(opa, REFUSAL[variant])
        engine = OpaPolicyEngine(opa.url, timeout_ms=3000)
        with pytest.raises(PolicyUnavailable):
            engine.decide(VALID)  # no active bundle: undefined decision, never an answer
        with pytest.raises(PolicyUnavailable):
            engine.check()
        # the service on that OPA: 503 policy_unavailable, no leaf, not ready
        agent: Identity = world.identities["agent-1"]
        before = tree_size(world)
        with run_server(world, _opa_settings(world, opa)) as srv, srv.client(agent) as client:
            answer = client.post("/v1/disclosures", json=body(world.case()))
            ready = client.get("/readyz")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "policy_unavailable"
        assert "address" not in answer.text
        assert ready.status_code != 200
        assert tree_size(world) == before
    finally:
        opa.stop()


def test_ec_p256_signed_bundle_activates(
    opa_binary: str, bundle_server: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = bundle_server
    key = ec.generate_private_key(ec.SECP256R1())
    public = _pem_pair(key, tmp_path / "ec")
    _publish(root, BundleSigningKey.load(tmp_path / "ec.pem", KEY_ID))
    opa = RealOpa(
        opa_binary,
        tmp_path,
        [
            "--config-file",
            str(OPA_DIR / "config-local.yaml"),
            "--set",
            f"services.local-bundles.url={url}",
            "--set",
            f"keys.{KEY_ID}.algorithm=ES256",
            "--set-file",
            f"keys.{KEY_ID}.key={public}",
        ],
    ).start(wait_bundle=True)
    try:
        assert OpaPolicyEngine(opa.url, timeout_ms=3000).decide(VALID).allow is True
    finally:
        opa.stop()


def test_decision_log_holds_no_reason_and_no_subject_ref(
    opa_binary: str,
    keys: dict[str, Path],
    bundle_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, url = bundle_server
    _publish(root, BundleSigningKey.load(keys["policy"], KEY_ID))
    opa = _start_opa(opa_binary, tmp_path, url, keys["policy_pub"], wait_bundle=True)
    reason = VALID["request"]["reason"]
    refs = {VALID["request"]["subject_ref"], *VALID["case"]["subject_refs"]}
    try:
        assert OpaPolicyEngine(opa.url, timeout_ms=3000).decide(VALID).allow is True
        deadline = time.monotonic() + 10
        entries: list[dict[str, object]] = []
        while time.monotonic() < deadline and not entries:
            entries = [
                json.loads(line)
                for line in opa.log_text().splitlines()
                if line.startswith("{") and '"decision_id"' in line
            ]
            time.sleep(0.1)
    finally:
        opa.stop()
    assert entries, "OPA logged no decision"
    entry = entries[-1]
    assert entry["path"] == "taxaddr/disclosure/decision"
    # nowhere in OPA's output (console decision log and server log alike)
    everything = opa.log_text()
    assert reason not in everything
    assert reason[:24] not in everything
    for ref in refs:
        assert ref not in everything
    erased = set(entry.get("erased", []))  # type: ignore[arg-type]
    assert {"/input/request/reason", "/input/request/subject_ref"} <= erased
    assert "/input/case/subject_refs" in erased
    # the decision itself and the non-personal facts stay in the log
    assert entry["result"] == {"allow": True, "reasons": []}
    assert entry["input"]["requester"]["id"] == VALID["requester"]["id"]  # type: ignore[index]


@pytest.mark.parametrize("name", ["config.yaml", "config-local.yaml"])
def test_configs_without_the_public_key_do_not_start(opa_binary: str, name: str) -> None:
    # The documented command without --set-file: OPA refuses the configuration
    # (it never runs with signature verification silently off).
    done = subprocess.run(
        [
            opa_binary,
            "run",
            "--server",
            "--addr",
            "127.0.0.1:0",
            "--config-file",
            str(OPA_DIR / name),
            str(OPA_DIR / "mask.rego"),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode != 0
    assert f"no keys provided for key ID {KEY_ID}" in done.stdout + done.stderr


def test_production_config_is_valid_for_opa_and_activates_a_signed_bundle(
    opa_binary: str,
    keys: dict[str, Path],
    bundle_server: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # config.yaml as deployed (env-substituted services, persistence), on 127.0.0.1 only.
    root, url = bundle_server
    (root / "bundles").mkdir(exist_ok=True)
    write_bundle(
        load_sources(POLICY_DIR),
        root / "bundles" / BUNDLE_NAME,
        BundleSigningKey.load(keys["policy"], KEY_ID),
    )
    monkeypatch.setenv("BUNDLE_SERVICE_URL", url)
    monkeypatch.setenv("BUNDLE_SERVICE_TOKEN", "test-token")
    monkeypatch.setenv("DECISION_LOG_SERVICE_URL", url)  # answers 501 to POST: logs retried
    monkeypatch.setenv("DECISION_LOG_SERVICE_TOKEN", "test-token")
    opa = RealOpa(
        opa_binary,
        tmp_path,
        [
            "--config-file",
            str(OPA_DIR / "config.yaml"),
            "--set",
            f"persistence_directory={tmp_path / 'persist'}",
            "--set-file",
            f"keys.{KEY_ID}.key={keys['policy_pub']}",
            str(OPA_DIR / "mask.rego"),
        ],
    ).start(wait_bundle=True)
    try:
        decision = OpaPolicyEngine(opa.url, timeout_ms=3000).decide(VALID)
        assert decision.allow is True
        assert decision.policy_version == EmbeddedPolicyEngine(POLICY_DIR).policy_version
    finally:
        opa.kill()  # a graceful stop would wait on flushing logs to the stand-in log service


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    _pem_pair(key, path.with_suffix(""))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048 bits"),  # noqa: S505 (the weak key under test)
        (lambda: ec.generate_private_key(ec.SECP384R1()), "RSA \\(RS256\\) or EC P-256"),
    ],
)
def test_weak_or_unsupported_signing_keys_are_refused(
    make: object, message: str, tmp_path: Path
) -> None:
    key = make()  # type: ignore[operator]
    path = _write_key(tmp_path / "k.pem", key)
    with pytest.raises(UsageError, match=message):
        write_bundle(
            load_sources(POLICY_DIR), tmp_path / "b.tar.gz", BundleSigningKey.load(path, KEY_ID)
        )
    assert not (tmp_path / "b.tar.gz").exists()


def test_unreadable_or_non_pem_signing_key_and_empty_key_id(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read signing key"):
        BundleSigningKey.load(tmp_path / "missing.pem", KEY_ID)
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(UsageError, match="not an unencrypted PEM private key"):
        BundleSigningKey.load(tmp_path / "junk.pem", KEY_ID).sign({"a/data.json": b"{}"})
    with pytest.raises(UsageError, match="--key-id must not be empty"):
        BundleSigningKey.load(tmp_path / "junk.pem", " ")
