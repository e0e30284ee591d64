"""The ``taxaddr`` command line.

Commands parse arguments, call one service function and render its result.
:func:`run` is the one error handler: a refusal becomes one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from typer._click import exceptions as click_exc

from taxaddr.api.readiness import database_problem
from taxaddr.cli import (
    accounting,
    audit,
    case,
    db,
    dev,
    importer,
    issuer,
    keys,
    order,
    policy,
    report,
    request,
    requester,
    serve,
    witness,
)
from taxaddr.errors import TaxaddrError

app = typer.Typer(
    name="taxaddr",
    help="Privacy-preserving taxpayer address disclosure service (26 U.S.C. 6103(i)(2)).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (
    keys,
    db,
    importer,
    dev,
    issuer,
    case,
    order,
    policy,
    audit,
    requester,
    serve,
    request,
    report,
    witness,
    accounting,
):
    _module.register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status; errors are one stderr line."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="taxaddr", standalone_mode=False)
    except TaxaddrError as exc:
        _fail(f"{exc.code}: {exc.message}")
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        _fail("aborted")
        return 130
    except click_exc.ClickException as exc:
        message = exc.format_message()
        if message:  # a bare `taxaddr` prints its help and has nothing more to say
            _fail(message)
        return exc.exit_code
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except DBAPIError as exc:
        if isinstance(exc, _PROGRAM_ERRORS) or os.environ.get("TAXADDR_DEBUG") == "1":
            return _unexpected(exc)
        _fail(f"database_unavailable: {database_problem(exc)}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback, no PII
        return _unexpected(exc)
    return result if isinstance(result, int) else 0


# Driver errors that are this program's mistakes rather than the database's state.
_PROGRAM_ERRORS = (IntegrityError, ProgrammingError, DataError)


def _unexpected(exc: BaseException) -> int:
    if os.environ.get("TAXADDR_DEBUG") == "1":
        raise exc
    # Only the exception's type: driver messages can echo SQL parameters.
    _fail(f"internal_error: unexpected {type(exc).__name__} (set TAXADDR_DEBUG=1 for details)")
    return 1


def _fail(line: str) -> None:
    sys.stderr.write(f"taxaddr: {line.splitlines()[0] if line else 'error'}\n")
    sys.stderr.flush()


def main() -> None:
    sys.exit(run())
