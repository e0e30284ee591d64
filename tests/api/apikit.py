"""A complete taxaddr world for API tests: keys, database, issuer, store, identities, server.

Everything is real: dev keys from ``init_dev_keys``, a migrated database, the
dev issuer trusted through ``issuer add``'s code path, records imported through
the importer, client certificates issued by the dev client CA and a uvicorn
server with our TLS context on 127.0.0.1 (random port) in a background thread.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from taxaddr.api.app import create_app
from taxaddr.api.runtime import dispose_engines, engine_for, keystore_for
from taxaddr.api.server import ServerThread, make_config
from taxaddr.audit.admin import cli_actor, note_policy_version
from taxaddr.cases.issue import CaseSpec, sign_case_reference
from taxaddr.cases.issuers import add_from_file
from taxaddr.config import Settings
from taxaddr.crypto import pki
from taxaddr.crypto.keystore import DEV_ISSUER_ID, FileKeyStore, init_dev_keys
from taxaddr.db import write_transaction
from taxaddr.disclosure.identity import add_requester
from taxaddr.migrate import upgrade
from taxaddr.policy.sources import load_sources
from taxaddr.store.importer import import_file

REPO = Path(__file__).resolve().parents[2]
STATUTE = "8 U.S.C. 1253(a)(1)"
REASON = (
    "Subject is charged under 8 U.S.C. 1253(a)(1) in case 1:26-cr-00123; the arrest "
    "warrant must be served at the subject's current residence."
)

# Synthetic people (no real persons). TINs are valid-looking SSNs of the test world.
JANE = {"tin": "212-55-1234", "name": "Jane Q Doe"}
JOHN = {"tin": "318-40-2222", "name": "JOHN SMITH"}
AMBIGUOUS = {"tin": "415-66-7777", "name": "ANA LOPEZ"}
UNKNOWN = {"tin": "519-12-3456", "name": "NOBODY KNOWN"}
_SEED_CSV = """
212-55-1234,JANE Q DOE,1401 Quill Street NW,Washington,DC,20001,2024,2024-04-01
212-55-1234,JANE Q DOE,77 Old Birch Road,Arlington,VA,22201,2023,2023-04-01
318-40-2222,JOHN SMITH,9 Harbor Lane,Baltimore,MD,21201,2024,2024-02-15
415-66-7777,ANA LOPEZ,5 Cedar Court,Richmond,VA,23219,2023,2023-05-01
415-66-7777,ANA LOPES,6 Cedar Court,Richmond,VA,23219,2024,2024-05-01
"""
# tin, name, street, city, state, zip, tax_period, as_of
SEED_ROWS = [tuple(line.split(",")) for line in _SEED_CSV.strip().splitlines()]
SEEDED_SECRETS = sorted(
    {v for row in SEED_ROWS for v in (row[0], row[0].replace("-", ""), row[1], row[2])}
    | {UNKNOWN["tin"], UNKNOWN["tin"].replace("-", ""), UNKNOWN["name"], JANE["name"].upper()}
)


# The policy refusals, each drawn by one change to a good request:
# (expected code, label, world.case overrides, body overrides)
POLICY_REFUSALS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("proceeding_not_criminal", "civil", {"proceeding": "civil"}, {}),
    (
        "statute_not_criminal",
        "civil statute",
        {"statutes": ["8 U.S.C. 1227"]},
        {"statute": "8 U.S.C. 1227"},
    ),
    ("statute_not_on_case", "other statute", {}, {"statute": "8 U.S.C. 1326"}),
    ("agency_mismatch", "agency", {"agency": "FBI"}, {}),
    ("requester_not_on_case", "requester", {"requesters": ["agent-2"]}, {}),
    ("subject_not_on_case", "subject", {"subjects": [JOHN["tin"]]}, {}),
    ("tax_period_not_covered", "period", {}, {"tax_periods": ["2021"]}),
    ("reason_insufficient", "boilerplate", {}, {"reason": "immigration enforcement"}),
    ("reason_insufficient", "short", {}, {"reason": "  needed for case  "}),
]


@dataclass(frozen=True)
class Identity:
    id: str
    role: str
    agency: str
    cert: Path
    key: Path
    ca: Path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass
class World:
    root: Path
    settings: Settings
    keystore: FileKeyStore
    identities: dict[str, Identity] = field(default_factory=dict)

    @property
    def keys_dir(self) -> Path:
        return self.settings.keys_dir

    def identity(
        self,
        requester_id: str,
        *,
        role: str = "requester",
        agency: str = "ICE-HSI",
        register: bool = True,
        not_after: dt.datetime | None = None,
        ca: pki.CertKey | None = None,
    ) -> Identity:
        """A client key + certificate (dev client CA unless ``ca``), registered unless told."""
        issued = pki.issue_cert(
            ca or self.keystore.files.client_ca(),
            requester_id,
            server=False,
            not_before=(not_after - dt.timedelta(days=2)) if not_after else None,
            not_after=not_after,
        )
        out = self.root / "clients"
        out.mkdir(exist_ok=True)
        cert, key = out / f"{requester_id}.crt", out / f"{requester_id}.key"
        cert.write_bytes(issued.cert_pem())
        key.write_bytes(issued.key_pem())
        if register:
            with write_transaction(engine_for(self.settings)) as session:
                add_requester(
                    session,
                    requester_id=requester_id,
                    agency=agency,
                    role=role,
                    cert=issued.cert,
                    actor=cli_actor(),
                )
        ident = Identity(requester_id, role, agency, cert, key, self.keystore.files.server_ca_path)
        self.identities[requester_id] = ident
        return ident

    def case(self, **overrides: Any) -> str:
        values: dict[str, Any] = {
            "issuer": DEV_ISSUER_ID,
            "number": "1:26-cr-00123",
            "court": "D.D.C.",
            "proceeding": "criminal",
            "statutes": [STATUTE],
            "agency": "ICE-HSI",
            "requesters": ["agent-1"],
            "subjects": [JANE["tin"], JOHN["tin"], AMBIGUOUS["tin"], UNKNOWN["tin"]],
            "tax_periods": ["2023", "2024"],
            "max_disclosures": 100,
            "valid_days": 30,
        }
        now = overrides.pop("now", None)
        values.update(overrides)
        return sign_case_reference(self.keystore, self.keys_dir, CaseSpec(**values), now=now)


def body(case_ref: str, person: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    person = person or JANE
    payload: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "case_reference": case_ref,
        "subject": {
            "tin": person["tin"],
            "name": person["name"],
            "last_known_address": {
                "street": "1401 Quill Street NW",
                "city": "Washington",
                "state": "DC",
                "zip": "20001",
            },
        },
        "tax_periods": ["2024"],
        "statute": STATUTE,
        "reason": REASON,
    }
    payload.update(overrides)
    return payload


def build_world(root: Path, database_url: str | None = None, **settings_overrides: Any) -> World:
    root.mkdir(parents=True, exist_ok=True)
    keys_dir = root / "keys"
    init_dev_keys(keys_dir)
    url = database_url or f"sqlite:///{root / 'taxaddr.db'}"
    upgrade(url)
    values: dict[str, Any] = {
        "env": "test",
        "database_url": url,
        "keys_dir": keys_dir,
        "policy_dir": REPO / "policies",
        "port": 8443,
    }
    values.update(settings_overrides)
    settings = Settings(**values)
    keystore = keystore_for(settings)
    add_from_file(
        engine_for(settings),
        DEV_ISSUER_ID,
        keys_dir / "issuers" / f"{DEV_ISSUER_ID}.jwk",
        actor=cli_actor(),
    )
    csv_path = root / "seed.csv"
    lines = ["tin,name,street,city,state,zip,tax_period,as_of"]
    lines += [",".join(row) for row in SEED_ROWS]
    csv_path.write_text("\n".join(lines) + "\n")
    import_file(engine_for(settings), keystore, csv_path)
    # The policy version's policy_changed leaf, which a deployment's first decision
    # appends: the tests then see one leaf per request (tests/audit/test_admin_leaves.py
    # checks that first decision itself).
    with write_transaction(engine_for(settings)) as session:
        note_policy_version(session, load_sources(settings.policy_dir).version, lambda _v: None)
    return World(root=root, settings=settings, keystore=keystore)


@dataclass
class RunningServer:
    base_url: str
    thread: ServerThread
    world: World

    def client(self, ident: Identity, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, verify=ident.ssl_context(), timeout=30.0, **kwargs
        )


@contextmanager
def run_server(world: World, settings: Settings | None = None) -> Iterator[RunningServer]:
    settings = settings or world.settings
    app = create_app(settings)
    config = make_config(settings, app, world.keystore, port=0)
    thread = ServerThread(config)
    thread.start()
    try:
        yield RunningServer(f"https://127.0.0.1:{thread.port}", thread, world)
    finally:
        thread.stop()


def serve_command(world: World, port: int, **env: str) -> tuple[list[str], dict[str, str]]:
    """``taxaddr serve`` on 127.0.0.1:``port`` for ``world``, as a separate process."""
    full_env = {
        **os.environ,
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(world.keys_dir),
        "TAXADDR_DATABASE_URL": world.settings.database_url,
        "TAXADDR_POLICY_DIR": str(world.settings.policy_dir),
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    exe = Path(sys.executable).parent / "taxaddr"
    return [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], full_env


def cleanup() -> None:
    dispose_engines()


def forge_case(
    world: World,
    *,
    claims: dict[str, Any] | None = None,
    case: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
    key: Any = None,
) -> str:
    """A case reference with chosen claims/header, signed by the dev issuer unless ``key``."""
    from taxaddr.cases import jws
    from taxaddr.cases.issue import build_claims, issuer_kid

    spec = CaseSpec(
        issuer=DEV_ISSUER_ID,
        number="1:26-cr-00999",
        court="D.D.C.",
        proceeding="criminal",
        statutes=[STATUTE],
        agency="ICE-HSI",
        requesters=["agent-1"],
        subjects=[JANE["tin"]],
        tax_periods=["2024"],
        max_disclosures=5,
        valid_days=30,
    )
    values = build_claims(spec, now=dt.datetime.now(dt.UTC))
    values.update(claims or {})
    values["case"].update(case or {})
    hdr = {"alg": "EdDSA", "kid": issuer_kid(world.keystore, world.keys_dir, DEV_ISSUER_ID)}
    hdr.update(header or {})
    signing_key = key or world.keystore.issuer_signing_key(DEV_ISSUER_ID)
    return jws.sign_compact(hdr, values, signing_key)


def case_tokens(world: World) -> dict[str, str]:
    """A case reference failing each verification step, by the code it must draw."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    good = forge_case(world)
    head, payload, sig = good.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return {
        "case_reference_malformed": "not-a-jws",
        "case_signature_invalid": f"{head}.{payload}.{flipped}",
        "case_issuer_untrusted": forge_case(
            world, claims={"iss": "rogue-court"}, key=Ed25519PrivateKey.generate()
        ),
        "case_algorithm_forbidden": forge_case(world, header={"alg": "HS256"}),
        "case_audience_mismatch": forge_case(world, claims={"aud": "someone-else"}),
        "case_expired": world.case(now=past),
        "case_not_yet_valid": world.case(now=future),
    }


def tree_size(world: World) -> int:
    from sqlalchemy.orm import Session

    from taxaddr.audit.service import tree_size as _tree_size

    with Session(engine_for(world.settings)) as session:
        return _tree_size(session)


def leaves(world: World, start: int, end: int) -> list[dict[str, Any]]:
    from sqlalchemy.orm import Session

    from taxaddr.audit.service import get_entries

    with Session(engine_for(world.settings)) as session:
        return [e["leaf"] for e in get_entries(session, start, end)]
