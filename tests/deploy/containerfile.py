"""Read a Containerfile into the steps a build would take, to replay them on this machine.

Only what ``Containerfile`` uses is understood (FROM, ENV, WORKDIR, COPY, RUN,
USER, EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD, with ``\\`` continuations); anything
else is an error, so a new instruction cannot slip past the replay unnoticed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = {
    "FROM",
    "ENV",
    "WORKDIR",
    "COPY",
    "RUN",
    "USER",
    "EXPOSE",
    "HEALTHCHECK",
    "ENTRYPOINT",
    "CMD",
}


@dataclass
class Image:
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    user: str = "root"
    exposed: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    if pending:
        raise ValueError("Containerfile ends inside a continued line")
    return out


def _exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected the JSON exec form, got {rest!r}")
    return value


def parse(path: Path) -> Image:
    image = Image()
    for keyword, rest in _instructions(path.read_text()):
        if keyword not in KNOWN:
            raise ValueError(f"instruction {keyword} is not understood by the replay")
        if keyword == "FROM":
            image.base = rest
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"ENV needs NAME=value, got {item!r}")
                image.env[name] = value
        elif keyword == "WORKDIR":
            image.workdir = rest
        elif keyword == "COPY":
            parts = shlex.split(rest)
            image.copies.append((parts[:-1], parts[-1]))
        elif keyword == "RUN":
            image.runs.append(rest)
        elif keyword == "USER":
            image.user = rest
        elif keyword == "EXPOSE":
            image.exposed.extend(rest.split())
        elif keyword == "HEALTHCHECK":
            _options, sep, command = rest.partition("CMD ")
            if not sep:
                raise ValueError("HEALTHCHECK needs CMD [...]")
            image.healthcheck = _exec_form(command)
        elif keyword == "ENTRYPOINT":
            image.entrypoint = _exec_form(rest)
        elif keyword == "CMD":
            image.cmd = _exec_form(rest)
    return image
