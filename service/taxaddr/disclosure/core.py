"""Where a disclosure is decided: ``POST /v1/disclosures`` without the HTTP.

The steps follow DESIGN.md's data flow, in order, and stop at the first refusal:

1. identity      verified cert fingerprint -> registered requester (unknown / revoked)
2. rate limit    token bucket per identity, registered, revoked or not (429, no audit leaf)
3. body          strict schema (no duplicate members), TIN and name normalization, and a
                 ``request_id`` that holds none of the subject's data (422, no audit leaf)
4. role          only the ``requester`` role may ask (403 role_forbidden)
5. case          the case reference verified against trusted issuers (403 case_*)
6. policy        decision on verified facts only (403 first reason; 503 when unavailable)
7. match         uniform ``no_unique_match`` (404) for unknown TIN, name mismatch, ambiguity
8. transaction   replay guard (409 request_replayed) + quota + audit leaf + encrypted
                 accounting + the signed receipt, one commit (a no-match records its leaf
                 and request_id too)
9. answer        address, use restriction, audit reference and the receipt

Policy refusals (4-6) happen before any store lookup, so a refused request
never reveals whether a taxpayer exists. Every 200/403/404/409 answer to a
registered identity appends exactly one audit leaf; 413/422/429/503 append none.
Everything an answer needs (the decrypted address, the keys, the signed receipt) is
ready before the transaction commits: a failure rolls it back (no leaf, no quota, no
used request_id) and answers 503, so no answer ever contradicts its leaf.

Nothing a client chose enters a leaf unless it cannot be personal data: the
``request_id`` is a canonical UUID screened against the subject's TIN, name and
street; the ``statute`` is the request's when the policy data knows it, else
``other`` (the full text stays in the encrypted accounting record); a case
reference whose ``jti`` holds such data is refused as malformed and logged without
it. :func:`taxaddr.audit.leaf.build_leaf` checks all of it again before the append.

:func:`disclose` returns a typed outcome (:mod:`taxaddr.disclosure.outcome`) and knows
nothing of HTTP, the access log or metrics: the edge (``api/routes/disclosures.py``)
maps the outcome to them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.audit.accounting import prepare_accounting, store_accounting
from taxaddr.audit.admin import note_policy_version
from taxaddr.audit.leaf import (
    CANONICAL_UUID,
    OTHER_STATUTE,
    LeafInput,
    PersonalData,
    case_number_hash,
    new_server_id,
    screen_chosen,
)
from taxaddr.audit.log import AppendedLeaf, append_leaf
from taxaddr.cases.orders import Stay, stays_covering
from taxaddr.cases.usage import reserve_disclosure
from taxaddr.cases.verify import VerifiedCase, verify_case_with_usage
from taxaddr.config import Settings
from taxaddr.crypto import pki
from taxaddr.crypto.envelope import subject_ref
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import (
    WriterQueue,
    database_for,
    pinned_session,
    unpin_session,
    write_transaction,
)
from taxaddr.db.group import GroupCommitter, WriteBody
from taxaddr.db.repositories import requesters as requesters_repo
from taxaddr.disclosure.identity import RequesterRecord, lookup_identity
from taxaddr.disclosure.limits import (
    RequesterUsage,
    record_case_seen,
    record_disclosed,
    requester_usage,
)
from taxaddr.disclosure.outcome import Caller, Disclosed, NoMatch, Outcome, Refused, Unavailable
from taxaddr.disclosure.ratelimit import Limiter
from taxaddr.disclosure.receipt import ReceiptSigner
from taxaddr.disclosure.request import (
    DisclosureRequest,
    normalize_subject,
    parse_request,
    personal_data,
)
from taxaddr.disclosure.steps import Steps, T, run_steps, run_steps_async
from taxaddr.errors import (
    AuditUnavailable,
    CaseError,
    CaseQuotaExhausted,
    CaseReferenceMalformed,
    DatabaseUnavailable,
    NoUniqueMatch,
    PolicyDenied,
    RequesterRevoked,
    RequesterUnknown,
    RequestInvalid,
    RequestReplayed,
    RoleForbidden,
    TaxaddrError,
    order_reasons,
)
from taxaddr.policy import PolicyEngine, build_input, get_policy_engine
from taxaddr.policy.sources import load_sources
from taxaddr.store.lookup import DisclosedAddress, lookup_address

USE_RESTRICTION = (
    "Return information disclosed under 26 U.S.C. § 6103(i)(2) for the criminal proceeding "
    "or investigation named in the case reference only. Under § 6103(i)(2)(A) it may be used "
    "solely by officers and employees personally and directly engaged in that proceeding or "
    "investigation, and it must not be redisclosed except as 26 U.S.C. § 6103 permits; "
    "safeguards of § 6103(p)(4) apply. Unauthorized inspection or disclosure is punishable "
    "under 26 U.S.C. §§ 7213, 7213A and 7431."
)
UNKNOWN_POLICY_VERSION = "unknown"


@dataclass
class DisclosureService:
    """Shared resources of the disclosure path (one per app)."""

    settings: Settings
    engine: Engine
    keystore: KeyStore
    limiter: Limiter
    _policy_engine: PolicyEngine | None = field(default=None, repr=False)
    _pinned: dict[tuple[int, bool], Session] = field(default_factory=dict, repr=False)

    @cached_property
    def runs_inline(self) -> bool:
        """Decide disclosures on the event loop's thread instead of a worker thread.

        True when every step is local CPU work (SQLite and the embedded policy engine):
        handing such a request to a thread and back costs about twice the work itself
        (both threads contend for the GIL at every SQLite call), and each server process
        gets its parallelism from the other workers instead. With PostgreSQL or an OPA
        server, a step waits on the network, and a worker thread does it.
        """
        return database_for(self.engine).embedded and self.settings.policy_engine == "embedded"

    @cached_property
    def writers(self) -> WriterQueue:
        return WriterQueue(self.engine)

    @cached_property
    def committer(self) -> GroupCommitter:
        """This process's group committer of decision transactions (taxaddr.db.group)."""
        return GroupCommitter(self.engine, self.writers)

    def run_write(self, body: WriteBody[T]) -> T:
        """One decision transaction, in this process's next group commit (waits for it)."""
        return self.committer.run(body)

    async def write_async(self, body: WriteBody[T]) -> T:
        """:meth:`run_write` for the event loop: awaits the group's commit."""
        return await asyncio.wrap_future(self.committer.submit(body))

    @cached_property
    def signer(self) -> ReceiptSigner:
        return ReceiptSigner(self.keystore.audit_signing_key())

    @cached_property
    def known_statutes(self) -> frozenset[str]:
        """The statutes a leaf may name (criminal list and listed civil provisions)."""
        return known_statutes(self.settings.policy_dir)

    @cached_property
    def _local_policy(self) -> tuple[str, frozenset[str]] | None:
        try:
            version = load_sources(self.settings.policy_dir).version
        except TaxaddrError:
            return None
        return version, statute_allow_list(self.settings.policy_dir)

    def criminal_statutes_of(self, version: str) -> frozenset[str] | None:
        """The criminal allow-list of ``version`` when it is the local policy directory's
        (the embedded engine's, or an OPA bundle built from it); else unknown (None)."""
        local = self._local_policy
        return local[1] if local is not None and local[0] == version else None

    def leaf_statute(self, statute: str) -> str:
        """The request's statute as its leaf carries it: known, or ``other``."""
        return statute if statute in self.known_statutes else OTHER_STATUTE

    def policy_engine(self) -> PolicyEngine:
        """The settings' engine, looked up once per app (the lookup resolves a path on
        every call). A failure to build it is not remembered: the next request retries."""
        engine = self._policy_engine
        if engine is None:
            engine = self._policy_engine = get_policy_engine(self.settings)
        return engine

    def policy_version(self) -> str:
        """The loaded policy's version, for leaves of refusals made before the policy ran."""
        try:
            version = getattr(self.policy_engine(), "policy_version", None)
        except TaxaddrError:
            return UNKNOWN_POLICY_VERSION
        return version if isinstance(version, str) and version else UNKNOWN_POLICY_VERSION

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction. On SQLite, writers of every server process queue
        first (:class:`WriterQueue`), so they never sleep in SQLite's busy handler."""
        with self.writers.turn(), write_transaction(self.engine) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except OperationalError as exc:
            raise DatabaseUnavailable("database unavailable") from exc

    # The decision path's transactions. When decisions run on the event loop, that one
    # thread keeps its own read and write sessions (db.pinned_session) instead of
    # taking a pooled connection and building a session for each transaction.

    @contextmanager
    def decision_read(self) -> Iterator[Session]:
        """The read transaction of one decision (ended with a rollback)."""
        if not self.runs_inline:
            with self.read_session() as session:
                yield session
            return
        key = (threading.get_ident(), False)
        session = self._pinned_session(key)
        try:
            yield session
        except OperationalError as exc:
            self._unpin(key)
            raise DatabaseUnavailable("database unavailable") from exc
        finally:
            if key in self._pinned:
                self._end_read(key)

    @contextmanager
    def decision_write(self) -> Iterator[Session]:
        """The write transaction of one decision, in its writer's turn (committed)."""
        if not self.runs_inline:
            with self.write() as session:
                yield session
            return
        key = (threading.get_ident(), True)
        with self.writers.turn():
            session = self._pinned_session(key)
            try:
                with session.begin():
                    yield session
            except OperationalError as exc:
                self._unpin(key)
                raise DatabaseUnavailable("database unavailable") from exc
            finally:
                session.expunge_all()

    def _pinned_session(self, key: tuple[int, bool]) -> Session:
        """This thread's own read (``key[1]`` false) or write session, made on first use."""
        session = self._pinned.get(key)
        if session is None:
            session = self._pinned[key] = pinned_session(self.engine, immediate=key[1])
        return session

    def _end_read(self, key: tuple[int, bool]) -> None:
        session = self._pinned[key]
        try:
            session.rollback()
        except SQLAlchemyError:
            self._unpin(key)  # the connection is unusable: the next read opens a new one
        else:
            session.expunge_all()

    def _unpin(self, key: tuple[int, bool]) -> None:
        session = self._pinned.pop(key, None)
        if session is None:
            return
        try:
            unpin_session(session)
        except SQLAlchemyError:
            return  # the connection is already unusable; nothing more to release

    def close(self) -> None:
        """Release the decision path's own connections and the writer queue's lock file
        (server shutdown, tests)."""
        for key in list(self._pinned):
            self._unpin(key)
        if "committer" in self.__dict__:  # made on first use (cached_property)
            self.committer.close()
        if "writers" in self.__dict__:
            self.writers.close()


class _Denied(Exception):
    """Internal: the read phase refused; the denial is audited after it closed."""

    def __init__(
        self,
        who: RequesterRecord,
        request_id: str,
        error: TaxaddrError,
        ctx: _LeafContext | None,
    ) -> None:
        super().__init__(error.code)
        self.who, self.request_id, self.error, self.ctx = who, request_id, error, ctx


class _Refusal(Exception):
    """Internal: the write transaction must roll back and record a denial instead."""

    def __init__(self, error: TaxaddrError) -> None:
        super().__init__(error.code)
        self.error = error


def disclose(
    svc: DisclosureService, cert_der: bytes | None, body: bytes, caller: Caller
) -> Outcome:
    """Decide one disclosure request for the verified client certificate ``cert_der``.

    ``caller`` holds the server's id of the request; the core fills in who asked as it
    learns it. Every refusal the contract names is an outcome (with its leaf when one
    committed); an exception that is not a :class:`TaxaddrError` (a program error, a
    driver error the edge maps) propagates.
    """
    try:
        return run_steps(_disclose(svc, cert_der, body, caller), svc.run_write)
    except TaxaddrError as exc:
        return _failed(caller, exc)


async def disclose_async(
    svc: DisclosureService, cert_der: bytes | None, body: bytes, caller: Caller
) -> Outcome:
    """:func:`disclose` for the event loop: the read phase runs inline, each write
    transaction joins the process's next group commit while the loop goes on."""
    try:
        return await run_steps_async(_disclose(svc, cert_der, body, caller), svc.write_async)
    except TaxaddrError as exc:
        return _failed(caller, exc)


def _failed(caller: Caller, exc: TaxaddrError) -> Outcome:
    if exc.status >= _SERVER_ERROR:
        return Unavailable(caller, exc)
    return Refused(caller, exc, leaf=None)


_SERVER_ERROR = 500


def _disclose(
    svc: DisclosureService, cert_der: bytes | None, body: bytes, caller: Caller
) -> Steps[Outcome]:
    # A generator: each write transaction is yielded as a body (taxaddr.disclosure.steps)
    # and its result (or exception) comes back at the yield.
    # One read session (one pooled connection) for every step up to the match. It is
    # closed before any write, so a thread never holds two pooled connections.
    try:
        with svc.decision_read() as session:
            allowed = _decide(svc, session, cert_der, body, caller)
    except _Denied as denied:
        return (
            yield from _record_denial(
                svc, denied.who, caller, denied.request_id, denied.error, ctx=denied.ctx
            )
        )
    who, req, ctx, vc = allowed.who, allowed.req, allowed.ctx, allowed.case
    tin, name, address = allowed.tin, allowed.name, allowed.address
    ref = ctx.subject_ref or ""
    if address is None:
        return (yield from _record_no_match(svc, who, caller, req, ctx))

    # Everything the answer needs is ready before the transaction: the address was
    # decrypted by the match, and the receipt key is loaded here (a missing key is 503
    # keys_unavailable before anything is written).
    signer = svc.signer
    disclosed = dataclasses.asdict(address)  # street, city, state, zip, as_of: all that leaves
    # The leaf must not hold the matched record's data either (its name is the request's).
    ctx.personal = ctx.personal | PersonalData.of(streets=[address.street])
    disclosure_id = new_server_id()
    now = datetime.now(UTC)

    # The accounting record's plaintext and its wrapped data key do not depend on the
    # leaf index: made before the transaction (the KEK may be an HSM round trip).
    accounting = prepare_accounting(
        svc.keystore,
        {
            "disclosure_id": disclosure_id,
            "time": now.isoformat(),
            "request_id": req.request_id,
            "requester_id": who.id,
            "agency": who.agency,
            "case_jti": vc.jti,
            "case_number": vc.number,
            "court": vc.court,
            "statute": req.statute,
            "reason": req.reason,
            "tax_periods": list(req.tax_periods),
            "tin": tin,
            "name": name,
            "address": disclosed,
        },
    )

    # 8. one write transaction: quota, audit leaf, accounting, replay guard, receipt.
    # Any failure before the commit rolls all of it back. The audit head is locked by
    # the append (PostgreSQL: the one head row, FOR UPDATE) after the quota; what follows
    # it needs the leaf index and is short: seal and insert, one insert, one signature.
    def transaction(session: Session) -> tuple[AppendedLeaf, str]:
        _reserve_quota(session, vc)
        leaf = _append_decision(
            svc,
            session,
            _leaf(who, req.request_id, ctx=ctx, outcome="disclosed", reasons=(), now=now),
        )
        # A stay applied since the read phase: its leaf is before this one (the append
        # serialized them), so this disclosure must not happen (rolled back, refused).
        if _stays_covering(session, datetime.now(UTC), who, vc, req.statute):
            raise _Refusal(PolicyDenied(["disclosure_stayed"]))
        with _database_outage_is_database(session):
            store_accounting(session, accounting, leaf.index)
        record_case_seen(session, vc, ctx.limits)
        record_disclosed(session, who.id, ref, leaf.index, now)
        _remember_request_id(session, who.id, req.request_id, leaf.index, now)
        receipt = signer.sign(
            {
                "disclosure_id": disclosure_id,
                "request_id": req.request_id,
                "requester_id": who.id,
                "case_jti": vc.jti,
                "leaf_index": leaf.index,
                "leaf_hash": leaf.leaf_hash.hex(),
                "tree_size": leaf.tree_size,
                "iat": int(now.timestamp()),
                "time": leaf.leaf["time"],
            }
        )
        return leaf, receipt

    try:
        leaf, receipt = yield transaction
    except _Refusal as refusal:
        return (yield from _record_denial(svc, who, caller, req.request_id, refusal.error, ctx=ctx))
    except SAIntegrityError:
        # A concurrent request with the same request_id committed first.
        return (
            yield from _record_denial(svc, who, caller, req.request_id, RequestReplayed(), ctx=ctx)
        )
    except CaseError as exc:
        return (yield from _record_denial(svc, who, caller, req.request_id, exc, ctx=ctx))

    # 9. answer (only after the audit leaf committed)
    answer = {
        "disclosure_id": disclosure_id,
        "case_number": vc.number,
        "address": disclosed,
        "use_restriction": USE_RESTRICTION,
        "audit": {
            "leaf_index": leaf.index,
            "leaf_hash": leaf.leaf_hash.hex(),
            "tree_size": leaf.tree_size,
        },
        "receipt": receipt,
    }
    return Disclosed(caller, answer, leaf, req.statute)


@dataclass(frozen=True)
class _Allowed:
    """What the read phase established for a request the policy allowed."""

    who: RequesterRecord
    req: DisclosureRequest
    ctx: _LeafContext
    case: VerifiedCase
    tin: str
    name: str
    address: DisclosedAddress | None  # None: no unique match


def _decide(
    svc: DisclosureService, session: Session, cert_der: bytes | None, body: bytes, caller: Caller
) -> _Allowed:
    """Steps 1-7 (everything before the write transaction) in one read session."""
    # 1. identity, and 2. its rate limit: unregistered and revoked certificates draw
    # from buckets too (429, no leaf), so none of them can flood the log or the service.
    who = lookup_identity(session, cert_der)
    if who is None:
        svc.limiter.take("unregistered:" + (pki.fingerprint_der(cert_der) if cert_der else "-"))
        raise RequesterUnknown("the client certificate is not registered")
    caller.requester = who
    svc.limiter.take(who.id)
    if who.revoked:
        raise _Denied(who, _revoked_request_id(body, caller), RequesterRevoked(), None)

    # 3. body
    req = parse_request(body)
    tin, name = normalize_subject(req)
    personal = personal_data(req, tin, name)
    if not screen_chosen(req.request_id, personal):
        raise RequestInvalid(
            "request body invalid at request_id: must not hold the subject's TIN, name or street"
        )
    caller.client_request_id = req.request_id
    pseudonym_key = svc.keystore.pseudonym_key()
    ref = subject_ref(pseudonym_key, tin)
    ctx = _LeafContext(
        statute=svc.leaf_statute(req.statute),
        subject_ref=ref,
        policy_version=svc.policy_version(),
        personal=personal,
    )

    # 4. role
    if who.role != "requester":
        raise _Denied(who, req.request_id, RoleForbidden(), ctx)

    # 5. case reference
    try:
        vc, used = verify_case_with_usage(
            req.case_reference, session=session, settings=svc.settings
        )
    except CaseError as exc:
        raise _Denied(who, req.request_id, exc, ctx) from None
    if not screen_chosen(vc.jti, personal):
        # The issuer's jti would carry a TIN or the subject's name into the log: refuse
        # the reference, and log the refusal without it.
        raise _Denied(
            who, req.request_id, CaseReferenceMalformed("the case reference's jti is unusable"), ctx
        )
    ctx.case = vc

    # 6. policy (on verified facts only; no store access before it). Stays are read from
    # the database on every decision: an order applied anywhere takes effect here.
    decided_at = datetime.now(UTC)
    limits_used = ctx.limits = requester_usage(session, who.id, vc, ref, decided_at)
    stays = _stays_covering(session, decided_at, who, vc, req.statute)
    engine = svc.policy_engine()
    decision = engine.decide(
        build_policy_input(
            who,
            vc=vc,
            req=req,
            ref=ref,
            disclosures_used=used,
            pseudonym_key=pseudonym_key,
            requester_usage=limits_used.policy_input(),
            orders=[stay.policy_input() for stay in stays],
        )
    )
    ctx.policy_version = decision.policy_version
    if not decision.allow:
        reasons = order_reasons(list(decision.reasons)) or ["policy_denied"]
        raise _Denied(who, req.request_id, PolicyDenied(reasons), ctx)

    # 7. match (uniform: the store does the same work on every miss path). The
    # replay guard is checked in the write transaction that follows either way,
    # before anything is disclosed or a no-match is recorded.
    try:
        address = lookup_address(
            session, svc.keystore, tin=tin, name=name, tax_periods=list(req.tax_periods)
        )
    except NoUniqueMatch:
        address = None
    return _Allowed(who, req, ctx, vc, tin, name, address)


def build_policy_input(
    who: RequesterRecord,
    *,
    vc: VerifiedCase,
    req: DisclosureRequest,
    ref: str,
    disclosures_used: int,
    pseudonym_key: bytes,
    requester_usage: dict[str, Any],
    orders: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The contract's policy input, built only from verified facts (no TIN, name, address)."""
    return build_input(
        requester={"id": who.id, "agency": who.agency, "role": who.role},
        case=vc.policy_case(pseudonym_key),
        usage=disclosures_used,
        requester_usage=requester_usage,
        orders=orders or [],
        subject_ref=ref,
        address_complete=req.address_complete(),
        tax_periods=list(req.tax_periods),
        statute=req.statute,
        reason=req.reason,
    )


def _stays_covering(
    session: Session, now: datetime, who: RequesterRecord, vc: VerifiedCase, statute: str
) -> list[Stay]:
    return stays_covering(
        session,
        now,
        agency=who.agency,
        statute=statute,
        case_number=vc.number,
        requester_id=who.id,
    )


def _revoked_request_id(body: bytes, caller: Caller) -> str:
    """The request_id for a revoked requester's leaf: the client's when the body is a
    valid request and the id passes the screen, else the server's own id."""
    try:
        req = parse_request(body)
        tin, name = normalize_subject(req)
    except RequestInvalid:
        return _server_request_id(caller)
    if not screen_chosen(req.request_id, personal_data(req, tin, name)):
        return _server_request_id(caller)
    caller.client_request_id = req.request_id
    return req.request_id


def _server_request_id(caller: Caller) -> str:
    """The server's id of this request (canonical, TIN-safe; see leaf.new_server_id)."""
    if not CANONICAL_UUID.fullmatch(caller.request_id):
        caller.request_id = new_server_id()
    return caller.request_id


# -- audit ----------------------------------------------------------------------------


@dataclass
class _LeafContext:
    statute: str | None = None
    subject_ref: str | None = None
    case: VerifiedCase | None = None
    policy_version: str = UNKNOWN_POLICY_VERSION
    personal: PersonalData = field(default_factory=PersonalData)
    limits: RequesterUsage | None = None


def _leaf(
    who: RequesterRecord,
    request_id: str,
    *,
    ctx: _LeafContext | None,
    outcome: str,
    reasons: tuple[str, ...],
    now: datetime | None = None,
) -> LeafInput:
    case = ctx.case if ctx else None
    return LeafInput(
        request_id=request_id,
        requester_id=who.id,
        agency=who.agency,
        role=who.role,
        case_jti=case.jti if case else None,
        case_number_hash=case_number_hash(case.number) if case else None,
        statute=ctx.statute if ctx else None,
        outcome=outcome,
        reason_codes=reasons,
        subject_ref=ctx.subject_ref if ctx else None,
        policy_version=ctx.policy_version if ctx else UNKNOWN_POLICY_VERSION,
        time=now,
        personal=ctx.personal if ctx else None,
    )


def _append_decision(svc: DisclosureService, session: Session, leaf: LeafInput) -> AppendedLeaf:
    """A decision's leaf, after its policy version's ``policy_changed`` leaf if it is the
    first decision under that version (same transaction)."""
    note_policy_version(session, leaf.policy_version, svc.criminal_statutes_of)
    with _database_outage_is_database(session):
        return append_leaf(session, leaf)


@contextmanager
def _database_outage_is_database(session: Session) -> Iterator[None]:
    """The database went away under an audit write (a lost connection, a server that
    stopped): that is the database's outage, 503 database_unavailable like every other
    statement of the request, not a fault of the audit log."""
    try:
        yield
    except AuditUnavailable as exc:
        dbapi = session.get_bind().dialect.loaded_dbapi
        if isinstance(exc.__cause__, OperationalError | dbapi.OperationalError):
            raise DatabaseUnavailable("database unavailable") from exc
        raise


def _append_own_transaction(svc: DisclosureService, leaf: LeafInput) -> Steps[AppendedLeaf]:
    appended: AppendedLeaf = yield lambda session: _append_decision(svc, session, leaf)
    return appended


def _record_denial(
    svc: DisclosureService,
    who: RequesterRecord,
    caller: Caller,
    request_id: str,
    error: TaxaddrError,
    *,
    ctx: _LeafContext | None,
) -> Steps[Refused]:
    """Append the denial's audit leaf (own transaction): the refusal, with its leaf."""
    reasons = tuple(error.reasons) if isinstance(error, PolicyDenied) else (error.code,)
    appended = yield from _append_own_transaction(
        svc, _leaf(who, request_id, ctx=ctx, outcome="denied", reasons=reasons)
    )
    return Refused(caller, error, appended)


def _record_no_match(
    svc: DisclosureService,
    who: RequesterRecord,
    caller: Caller,
    req: DisclosureRequest,
    ctx: _LeafContext,
) -> Steps[NoMatch | Refused]:
    now = datetime.now(UTC)

    def transaction(session: Session) -> AppendedLeaf:
        leaf = _append_decision(
            svc,
            session,
            _leaf(who, req.request_id, ctx=ctx, outcome="no_match", reasons=(), now=now),
        )
        if ctx.case is not None:
            record_case_seen(session, ctx.case, ctx.limits)
        _remember_request_id(session, who.id, req.request_id, leaf.index, now)
        return leaf

    try:
        leaf: AppendedLeaf = yield transaction
    except (_Refusal, SAIntegrityError):
        return (
            yield from _record_denial(svc, who, caller, req.request_id, RequestReplayed(), ctx=ctx)
        )
    return NoMatch(caller, leaf)


def _reserve_quota(session: Session, vc: VerifiedCase) -> None:
    if not reserve_disclosure(session, vc):
        raise _Refusal(CaseQuotaExhausted())


def _remember_request_id(
    session: Session, requester_id: str, request_id: str, leaf_index: int, now: datetime
) -> None:
    """Record the request_id in the replay guard; raise a 409 refusal if it was used.

    One compiled statement on the hot path: the insert either adds the (requester,
    request_id) row or, when it exists (or a concurrent twin committed it first), adds
    nothing; then the whole transaction, leaf included, rolls back.
    """
    if not requesters_repo.remember_request_id(session, requester_id, request_id, leaf_index, now):
        raise _Refusal(RequestReplayed())


def _policy_data(policy_dir: Path) -> dict[str, Any]:
    """The policy data document (``taxaddr.policy_data``) of the first JSON file holding one."""
    for candidate in sorted(policy_dir.glob("*.json")):
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        policy_data = data.get("taxaddr", {}).get("policy_data") if isinstance(data, dict) else None
        if isinstance(policy_data, dict) and isinstance(policy_data.get("criminal_statutes"), dict):
            return policy_data
    return {}


def statute_allow_list(policy_dir: Path) -> frozenset[str]:
    """Designated statutes from the policy data document: the bounded metrics label set."""
    statutes = _policy_data(policy_dir).get("criminal_statutes")
    return frozenset(str(k) for k in statutes) if isinstance(statutes, dict) else frozenset()


def known_statutes(policy_dir: Path) -> frozenset[str]:
    """Every statute the policy data names: the criminal list and the listed civil
    provisions (``civil_statutes``), the only statute texts a leaf may carry."""
    data = _policy_data(policy_dir)
    known: set[str] = set()
    for key in ("criminal_statutes", "civil_statutes"):
        statutes = data.get(key)
        if isinstance(statutes, dict):
            known.update(str(k) for k in statutes)
    return frozenset(known)


__all__ = [
    "USE_RESTRICTION",
    "DisclosureService",
    "build_policy_input",
    "disclose",
    "known_statutes",
    "statute_allow_list",
]
