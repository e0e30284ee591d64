"""deploy/compose.yaml's topology from real processes on one machine (127.0.0.1 only).

One :class:`Cluster` owns a state directory and everything it starts:

* a throwaway PostgreSQL cluster (``initdb``/``pg_ctl``; as root its files belong to
  ``postgres`` and its binaries run through ``runuser``, PostgreSQL refuses root);
* two real OPA servers (``opa`` on PATH or ``../shared/bin/opa``) loading the policy
  bundle signed by ``taxaddr policy bundle --signing-key`` and refusing it unless it
  verifies under key id ``taxaddr-policy``; none with ``policy="embedded"``;
* N ``taxaddr serve`` replicas, each on its own port with its own worker(s);
* one HAProxy (Debian ``haproxy``): a TCP frontend in front of the replicas (mTLS
  ends at taxaddr) and an HTTP frontend in front of the OPA servers (health-checked
  on ``/health?bundles``, a failed connection retried on the other server); its
  admin socket drains a replica for a rolling restart;
* Prometheus scraping every replica directly over mTLS (the ``monitor`` identity),
  so ``sum by`` adds the replicas up.

The world inside: dev keys, the ``dev-court`` issuer, synthetic address records,
requester identities with client certificates, case references. ``start`` writes
``cluster.json`` (ports, pids with their start times, paths); ``Cluster.load`` reads
it back, so ``python -m deploy.cluster stop`` in another process stops exactly what
``start`` started (a pid whose start time differs is not ours and is left alone) and
removes the state directory: nothing is left behind.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED_OPA = REPO.parent / "shared" / "bin" / "opa"
STATUTE = "8 U.S.C. 1324"
REASON = (
    "Subject is charged under 8 U.S.C. 1324 in this case; the arrest warrant must be "
    "served at the subject's current residence."
)
POLICY_KEY_ID = "taxaddr-policy"
AGENCY = "ICE-HSI"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    """A system binary the cluster needs, or a one-line error naming its package."""
    if name == "opa":
        found = shutil.which("opa") or (str(SHARED_OPA) if SHARED_OPA.is_file() else None)
    elif name in ("initdb", "pg_ctl"):
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else shutil.which(name)
    else:
        found = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
        )
    if not found:
        package = {"opa": "../shared/bin/opa", "initdb": "postgresql", "pg_ctl": "postgresql"}
        raise RuntimeError(f"{name} not found (install {package.get(name, name)}: make sysdeps)")
    return found


def person(i: int) -> tuple[str, str]:
    """The i-th synthetic subject: an SSN-shaped test TIN (area 101+) and a name."""
    tin = f"{101 + i // 90000:03d}-{10 + (i // 1000) % 90:02d}-{1000 + i % 1000:04d}"
    letters, n = "", i + 26 * 26
    while n:
        n, r = divmod(n, 26)
        letters += chr(65 + r)
    return tin, f"PERSON {letters}"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (a pid is reused; this is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and _start_time(pid) == started


@dataclass
class Proc:
    """One process the cluster started: enough to stop it from another process."""

    name: str
    pid: int
    started: int | None
    log: str


@dataclass
class State:
    root: str
    policy: str
    replicas: int
    workers: int
    rate_limit: int
    pg_port: int
    pg_dir: str
    lb_port: int
    opa_lb_port: int
    replica_ports: list[int]
    opa_ports: list[int]
    prometheus_port: int
    procs: dict[str, Proc] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    cases: dict[str, str] = field(default_factory=dict)
    records: int = 0


def write_load_policy(dst: Path) -> Path:
    """The repository's policy copied to ``dst`` with the personal volume and caseload
    limits raised to 1,000,000: load generators (the cluster, the benchmarks) drive many
    subjects through a few identities, a bulk pattern the real limits (25 subjects a
    day, 50 open cases) refuse by design. The Rego modules are unchanged."""
    shutil.copytree(REPO / "policies", dst, dirs_exist_ok=True)
    data_path = dst / "data.json"
    data = json.loads(data_path.read_text())
    policy_data = data["taxaddr"]["policy_data"]
    for limit in ("max_subjects_per_requester_per_day", "max_open_cases_per_requester"):
        if limit in policy_data:
            policy_data[limit] = 1_000_000
    data_path.write_text(json.dumps(data, indent=2) + "\n")
    return dst


class Cluster:
    """Start, operate and stop the topology; see the module docstring."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.root = Path(state.root)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._identities = 8
        self._contexts: dict[str, ssl.SSLContext] = {}

    # -- construction --------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path | None = None,
        *,
        replicas: int = 3,
        policy: str = "opa",
        workers: int = 1,
        rate_limit: int = 600,
        records: int = 200,
        identities: int = 8,
    ) -> Cluster:
        """A new state directory (``root`` or a temporary one) with ports chosen."""
        if policy not in ("opa", "embedded"):
            raise ValueError("policy must be 'opa' or 'embedded'")
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="taxaddr-cluster-"))
        elif root.exists() and any(root.iterdir()):
            raise RuntimeError(f"{root} is not empty: a cluster runs there (make cluster-stop)")
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its data directory
        state = State(
            root=str(root.resolve()),
            policy=policy,
            replicas=replicas,
            workers=workers,
            rate_limit=rate_limit,
            pg_port=free_port(),
            # its own directory: PostgreSQL (as the postgres user) must reach it
            pg_dir=tempfile.mkdtemp(prefix="taxaddr-cluster-pg-"),
            lb_port=free_port(),
            opa_lb_port=free_port(),
            replica_ports=[free_port() for _ in range(replicas)],
            opa_ports=[free_port() for _ in range(2 if policy == "opa" else 0)],
            prometheus_port=free_port(),
            records=records,
        )
        cluster = cls(state)
        cluster._identities = identities
        return cluster

    @classmethod
    def load(cls, root: Path) -> Cluster:
        raw = json.loads((root / "cluster.json").read_text())
        procs = {k: Proc(**v) for k, v in raw.pop("procs").items()}
        return cls(State(**raw, procs=procs))

    def save(self) -> None:
        path = self.root / "cluster.json"
        path.write_text(json.dumps(asdict(self.state), indent=2))

    # -- paths and environment -------------------------------------------------------

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def policy_dir(self) -> Path:
        """The repository's policy with the personal volume and caseload limits raised:
        the cluster drives load through a few identities, which the real limits (25
        subjects a day, 50 open cases) would refuse long before any fault shows."""
        return self.root / "policies"

    def _write_policy(self) -> None:
        write_load_policy(self.policy_dir)

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.state.pg_port}/taxaddr"

    def env(self) -> dict[str, str]:
        """The replicas' (and the operator CLI's) TAXADDR_* settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAXADDR_")}
        env.update(
            TAXADDR_ENV="test",
            TAXADDR_DATABASE_URL=self.database_url,
            TAXADDR_KEYS_DIR=str(self.keys),
            TAXADDR_POLICY_DIR=str(self.policy_dir),
            TAXADDR_WORKERS=str(self.state.workers),
            TAXADDR_RATE_LIMIT=str(self.state.rate_limit),
            TAXADDR_POLICY_ENGINE=self.state.policy,
            TAXADDR_LOG_LEVEL="WARNING",
        )
        if self.state.policy == "opa":
            env["TAXADDR_OPA_URL"] = f"http://127.0.0.1:{self.state.opa_lb_port}"
            env["TAXADDR_OPA_TIMEOUT_MS"] = "2000"
        return env

    def taxaddr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The operator's CLI against this cluster's database and keys."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "taxaddr"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"taxaddr {' '.join(args[:2])}: {done.stderr.strip()}")
        return done

    # -- processes -----------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                start_new_session=True,
            )
        self._children[name] = proc
        self.state.procs[name] = Proc(name, proc.pid, _start_time(proc.pid), str(log))
        self.save()

    def running(self, name: str) -> bool:
        proc = self.state.procs.get(name)
        if proc is None:
            return False
        child = self._children.get(name)
        if child is not None:
            return child.poll() is None
        return _alive(proc.pid, proc.started)

    def signal(self, name: str, sig: int) -> None:
        proc = self.state.procs[name]
        if self.running(name):
            os.kill(proc.pid, sig)

    def wait_exit(self, name: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self._children.get(name)
            if child is not None:
                try:
                    child.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                return True
            if not self.running(name):
                return True
            time.sleep(0.05)
        return False

    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; forget the process."""
        if name not in self.state.procs:
            return
        if self.running(name):
            self.signal(name, signal.SIGTERM)
            if not self.wait_exit(name, timeout):
                self.signal(name, signal.SIGKILL)
                self.wait_exit(name, 5)
        self.state.procs.pop(name, None)
        self._children.pop(name, None)
        self.save()

    def kill(self, name: str) -> None:
        """``kill -9``: no drain, no cleanup (the replica's workers die with it)."""
        self.signal(name, signal.SIGKILL)
        self.wait_exit(name, 10)
        self.state.procs.pop(name, None)
        self._children.pop(name, None)
        self.save()

    # -- PostgreSQL ------------------------------------------------------------------

    def _run_as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def pg_init(self) -> None:
        pg = Path(self.state.pg_dir)
        pg.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pg, "postgres", "postgres")
        done = subprocess.run(
            [*self._run_as_postgres(), find_binary("initdb"), "-D", str(pg / "data"),
             "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-300:]}")

    def pg_start(self) -> None:
        pg = Path(self.state.pg_dir)
        opts = (
            f"-c port={self.state.pg_port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={pg} -c max_connections=200 "
            "-c synchronous_commit=on -c fsync=off -c full_page_writes=off"
        )
        done = subprocess.run(
            [*self._run_as_postgres(), find_binary("pg_ctl"), "-D", str(pg / "data"),
             "-o", opts, "-l", str(pg / "log"), "-w", "start"],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()[-300:]}")

    def pg_stop(self, mode: str = "fast") -> None:
        pg = Path(self.state.pg_dir)
        if not (pg / "data").exists():
            return
        subprocess.run(
            [*self._run_as_postgres(), find_binary("pg_ctl"), "-D", str(pg / "data"),
             "-m", mode, "-w", "stop"],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip

    def psql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one query on the cluster's database (``%s`` parameters)."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.state.pg_port} user=postgres dbname=taxaddr"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return list(cur.fetchall()) if cur.description else []

    # -- the world -------------------------------------------------------------------

    def build_world(self) -> None:
        """Keys, schema, issuer, records, identities and case references."""
        import psycopg

        from taxaddr.api.runtime import engine_for, keystore_for
        from taxaddr.audit.admin import cli_actor
        from taxaddr.cases.issuers import add_from_file
        from taxaddr.config import Settings
        from taxaddr.crypto import pki
        from taxaddr.crypto.keystore import DEV_ISSUER_ID, init_dev_keys
        from taxaddr.db import write_transaction
        from taxaddr.disclosure.identity import add_requester
        from taxaddr.migrate import upgrade
        from taxaddr.store.importer import import_file

        admin = f"host=127.0.0.1 port={self.state.pg_port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE taxaddr")
        init_dev_keys(self.keys)
        upgrade(self.database_url)
        settings = Settings(
            env="test", database_url=self.database_url, keys_dir=self.keys,
            policy_dir=self.policy_dir,
        )  # fmt: skip
        engine = engine_for(settings)
        keystore = keystore_for(settings)
        add_from_file(
            engine, DEV_ISSUER_ID, self.keys / "issuers" / f"{DEV_ISSUER_ID}.jwk",
            actor=cli_actor(),
        )  # fmt: skip
        rows = self.root / "records.csv"
        with rows.open("w") as fh:
            fh.write("tin,name,street,city,state,zip,tax_period,as_of\n")
            for i in range(self.state.records):
                tin, name = person(i)
                fh.write(f"{tin},{name},{i} Main Street,Springfield,IL,62701,2024,2024-03-01\n")
        report = import_file(engine, keystore, rows)
        if not report.ok:
            raise RuntimeError(f"the cluster's records did not import: {report}")
        rows.unlink()
        self.certs.mkdir()
        (self.certs / "ca.crt").write_bytes((self.keys / "server-ca.crt").read_bytes())
        ca = keystore.files.client_ca()
        self.state.ids = [f"cluster-agent-{n:02d}" for n in range(self._identities)]
        roles = [(rid, "requester") for rid in self.state.ids] + [("prometheus", "monitor")]
        with write_transaction(engine) as session:
            for rid, role in roles:
                issued = pki.issue_cert(ca, rid, server=False)
                (self.certs / f"{rid}.crt").write_bytes(issued.cert_pem())
                (self.certs / f"{rid}.key").write_bytes(issued.key_pem())
                os.chmod(self.certs / f"{rid}.key", 0o600)
                add_requester(
                    session, requester_id=rid, agency=AGENCY if role == "requester" else "OPS",
                    role=role, cert=issued.cert, actor=cli_actor(),
                )  # fmt: skip
        self.state.cases["load"] = self.issue_case(max_disclosures=1_000_000)
        (self.root / "case.jws").write_text(self.state.cases["load"] + "\n")
        engine.dispose()
        self.save()

    def issue_case(self, *, max_disclosures: int, subjects: range | None = None) -> str:
        """A case reference of ``dev-court`` for every identity and ``subjects``."""
        from taxaddr.api.runtime import keystore_for
        from taxaddr.cases.issue import CaseSpec, sign_case_reference
        from taxaddr.config import Settings
        from taxaddr.crypto.keystore import DEV_ISSUER_ID

        settings = Settings(env="test", database_url=self.database_url, keys_dir=self.keys)
        spec = CaseSpec(
            issuer=DEV_ISSUER_ID,
            number=f"1:26-cr-{int(time.time() * 1000) % 100000:05d}",
            court="D.D.C.",
            proceeding="criminal",
            statutes=[STATUTE],
            agency=AGENCY,
            requesters=self.state.ids,
            subjects=[person(i)[0] for i in (subjects or range(min(self.state.records, 50)))],
            tax_periods=["2024"],
            max_disclosures=max_disclosures,
            valid_days=30,
        )
        return sign_case_reference(keystore_for(settings), self.keys, spec)

    # -- OPA -------------------------------------------------------------------------

    def _policy_bundle(self) -> Path:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        opa = self.root / "opa"
        opa.mkdir(exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (opa / "signing.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (opa / "signing.pub.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        bundle = opa / "taxaddr-policy.tar.gz"
        self.taxaddr(
            "policy", "bundle", "--out", str(bundle), "--signing-key", str(opa / "signing.pem"),
            "--key-id", POLICY_KEY_ID,
        )  # fmt: skip
        return bundle

    def opa_start(self, n: int) -> None:
        opa = self.root / "opa"
        self._spawn(
            f"opa-{n}",
            [
                find_binary("opa"), "run", "--server",
                "--addr", f"127.0.0.1:{self.state.opa_ports[n]}",
                "--bundle", str(opa / "taxaddr-policy.tar.gz"),
                "--verification-key", str(opa / "signing.pub.pem"),
                "--verification-key-id", POLICY_KEY_ID,
                "--log-level", "error",
            ],
        )  # fmt: skip
        self._wait_http(f"http://127.0.0.1:{self.state.opa_ports[n]}/health?bundles", f"opa-{n}")

    def _wait_http(self, url: str, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready within {timeout} s: {self.log_tail(name)}")

    # -- HAProxy ---------------------------------------------------------------------

    def haproxy_config(self) -> str:
        s = self.state
        servers = "\n".join(
            f"    server r{n} 127.0.0.1:{port}" for n, port in enumerate(s.replica_ports)
        )
        lines = f"""global
    maxconn 4000
    stats socket {self.root}/haproxy.sock mode 600 level admin

defaults
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch

frontend taxaddr
    mode tcp
    bind 127.0.0.1:{s.lb_port}
    default_backend replicas

backend replicas
    mode tcp
    balance roundrobin
    default-server check inter 300ms fall 1 rise 1
{servers}
"""
        if s.opa_ports:
            opas = "\n".join(f"    server o{n} 127.0.0.1:{p}" for n, p in enumerate(s.opa_ports))
            lines += f"""
frontend opa
    mode http
    bind 127.0.0.1:{s.opa_lb_port}
    default_backend opa

backend opa
    mode http
    balance roundrobin
    timeout server 2s
    option httpchk GET /health?bundles
    http-check expect status 200
    retry-on conn-failure empty-response response-timeout
    default-server check inter 300ms fall 1 rise 1
{opas}
"""
        return lines

    def haproxy_start(self) -> None:
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(self.haproxy_config())
        binary = find_binary("haproxy")
        subprocess.run([binary, "-c", "-q", "-f", str(cfg)], check=True, timeout=30)
        self._spawn("haproxy", [binary, "-db", "-f", str(cfg)])
        deadline = time.monotonic() + 15
        while not (self.root / "haproxy.sock").exists():
            if time.monotonic() > deadline or not self.running("haproxy"):
                raise RuntimeError(f"haproxy did not start: {self.log_tail('haproxy')}")
            time.sleep(0.05)

    def haproxy(self, command: str) -> str:
        """One command on HAProxy's admin socket (``show stat``, ``set server …``)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.root / "haproxy.sock"))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def backend_status(self, backend: str = "replicas") -> dict[str, dict[str, str]]:
        """``show stat`` rows of ``backend``'s servers: status, scur (current sessions)."""
        lines = self.haproxy("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row
        return out

    # -- replicas --------------------------------------------------------------------

    def replica_start(self, n: int, *, wait: bool = True) -> None:
        port = self.state.replica_ports[n]
        self._spawn(
            f"replica-{n}",
            [str(Path(sys.executable).parent / "taxaddr"), "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            env=self.env(),
        )  # fmt: skip
        if wait:
            self.wait_ready(n)

    def client_context(self, identity: str) -> ssl.SSLContext:
        """A client TLS context as ``identity`` (built once per identity)."""
        ctx = self._contexts.get(identity)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
            ctx.load_cert_chain(self.certs / f"{identity}.crt", self.certs / f"{identity}.key")
            self._contexts[identity] = ctx
        return ctx

    def get(self, port: int, path: str, identity: str = "prometheus") -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPSConnection(
            "localhost", port, context=self.client_context(identity), timeout=10
        )
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def wait_ready(self, n: int, timeout: float = 60.0) -> None:
        name = f"replica-{n}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            try:
                status, _ = self.get(self.state.replica_ports[n], "/readyz")
                if status == 200:
                    return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready within {timeout} s: {self.log_tail(name)}")

    def wait_in_rotation(self, n: int, up: bool = True, timeout: float = 10.0) -> None:
        """Until HAProxy's check sees replica ``n`` up (or down)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.backend_status().get(f"r{n}", {}).get("status", "")
            if status.startswith("UP") == up and (up or status):
                return
            time.sleep(0.05)
        raise RuntimeError(f"replica {n} not {'up' if up else 'down'} in HAProxy: {status}")

    def rolling_restart(self, n: int, *, drain_timeout: float = 20.0) -> None:
        """Drain replica ``n`` in HAProxy, SIGTERM it (graceful), start it, put it back."""
        self.haproxy(f"set server replicas/r{n} state drain")
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if self.backend_status()[f"r{n}"]["scur"] == "0":
                break
            time.sleep(0.05)
        self.stop_process(f"replica-{n}", timeout=30)
        self.replica_start(n)
        self.haproxy(f"set server replicas/r{n} state ready")
        self.wait_in_rotation(n)

    # -- Prometheus ------------------------------------------------------------------

    def prometheus_start(self) -> None:
        targets = ", ".join(f'"127.0.0.1:{p}"' for p in self.state.replica_ports)
        cfg = self.root / "prometheus.yml"
        cfg.write_text(
            f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: taxaddr
    scheme: https
    scrape_timeout: 900ms
    tls_config:
      ca_file: {self.certs / "ca.crt"}
      cert_file: {self.certs / "prometheus.crt"}
      key_file: {self.certs / "prometheus.key"}
      server_name: localhost
    static_configs:
      - targets: [{targets}]
"""
        )
        self._spawn(
            "prometheus",
            [
                find_binary("prometheus"),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.root / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.state.prometheus_port}",
                "--log.level=warn",
            ],
        )
        self._wait_http(f"http://127.0.0.1:{self.state.prometheus_port}/-/ready", "prometheus")

    def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        url = (
            f"http://127.0.0.1:{self.state.prometheus_port}/api/v1/query?"
            + urllib.parse.urlencode({"query": query})
        )
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus: {body}")
        return list(body["data"]["result"])

    def scraped_since(self, since: float, timeout: float = 15.0) -> None:
        """Until Prometheus has scraped every replica after ``since`` (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ups = self.prometheus_query('timestamp(up{job="taxaddr"})')
            fresh = [float(r["value"][1]) > since for r in ups]
            live = self.prometheus_query('up{job="taxaddr"} == 1')
            if len(ups) == self.state.replicas and all(fresh) and len(live) == len(ups):
                return
            time.sleep(0.2)
        raise RuntimeError("prometheus did not scrape every replica in time")

    # -- whole cluster ---------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self.pg_init()
            self.pg_start()
            self._write_policy()
            self.build_world()
            if self.state.policy == "opa":
                self._policy_bundle()
                for n in range(len(self.state.opa_ports)):
                    self.opa_start(n)
            self.haproxy_start()
            for n in range(self.state.replicas):
                self.replica_start(n, wait=False)
            for n in range(self.state.replicas):
                self.wait_ready(n)
                self.wait_in_rotation(n)
            self.prometheus_start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, remove: bool = True) -> None:
        """Stop every process (replicas first), PostgreSQL, and remove the state."""
        order = sorted(self.state.procs, key=lambda n: (not n.startswith("replica"), n))
        for name in order:
            self.stop_process(name)
        self.pg_stop(mode="immediate")
        if remove:
            shutil.rmtree(self.state.pg_dir, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, name: str, lines: int = 15) -> str:
        proc = self.state.procs.get(name)
        path = Path(proc.log) if proc else self.root / "logs" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def describe(self) -> str:
        s = self.state
        return "\n".join(
            [
                f"taxaddr cluster in {s.root} (policy: {s.policy})",
                f"  HAProxy (TCP, mTLS at taxaddr): https://127.0.0.1:{s.lb_port}",
                *(f"  replica {n}: https://127.0.0.1:{p}" for n, p in enumerate(s.replica_ports)),
                *(f"  OPA {n}: http://127.0.0.1:{p}" for n, p in enumerate(s.opa_ports)),
                *([f"  OPA via HAProxy: http://127.0.0.1:{s.opa_lb_port}"] if s.opa_ports else []),
                f"  Prometheus: http://127.0.0.1:{s.prometheus_port}",
                f"  PostgreSQL: {self.database_url}",
                f"  client certificates: {self.certs} (ca.crt, {s.ids[0]}.crt/.key, ...)",
                f"  case reference: {self.root / 'case.jws'}",
            ]
        )
