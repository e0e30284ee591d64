"""The verifier's helper process: ``python -m taxaddr.audit.scan_worker``.

Reads one JSON request on stdin: the DBAPI ``module`` and its ``connect`` ``args`` and
``kwargs``, the chunk statement ``sql`` (compiled in :mod:`taxaddr.db.statements`,
parameters ``(start, count)``), ``limit``, ``chunk`` and ``cuts``. It scans the chunks
of ``[0, limit)`` from the last one downwards on its own connection and writes each
result to stdout as soon as it is done (format in :mod:`taxaddr.audit.scan`). The
verifier kills it when the two meet. It decides nothing: every hash it sends is
checked against the signed roots by the verifier. It imports no SQLAlchemy, so it
starts in a few tens of milliseconds.
"""

from __future__ import annotations

import importlib
import json
import sys

from taxaddr.audit.scan import encode, scan_chunk


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    limit, chunk, cuts, sql = (
        int(request["limit"]),
        int(request["chunk"]),
        [int(c) for c in request["cuts"]],
        str(request["sql"]),
    )
    dbapi = importlib.import_module(str(request["module"]))
    connection = dbapi.connect(*request["args"], **request["kwargs"])
    out = sys.stdout.buffer
    try:
        cursor = connection.cursor()
        for start in reversed(range(0, limit, chunk)):
            cursor.execute(sql, (start, min(chunk, limit - start)))
            datas = [bytes(d) for (d,) in cursor.fetchall()]
            out.write(encode(scan_chunk(datas, start, cuts)))
            out.flush()
    except BrokenPipeError:  # the verifier has what it needs and went on
        return 0
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
