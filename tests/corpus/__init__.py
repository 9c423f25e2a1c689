"""The hostile manifest corpus (tests/corpus/hostile) and its expected verdicts."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from pathlib import Path

HOSTILE = Path(__file__).resolve().parent / "hostile"


@dataclass(frozen=True)
class Case:
    """One manifest and the verdict the API server gives it (its first line)."""

    path: Path
    accept: bool
    field: str  # a field the rejection must name; "" when none can be named

    @property
    def id(self) -> str:
        return self.path.stem


def cases() -> list[Case]:
    out = []
    for path in sorted(HOSTILE.glob("*.yaml")):
        first = path.read_bytes().split(b"\n", 1)[0].decode()
        verdict = first.removeprefix("# expect: ").split(" ", 1)
        out.append(Case(path, verdict[0] == "accept", verdict[1] if len(verdict) > 1 else ""))
    return out


@dataclass(frozen=True)
class Rendered:
    code: int
    stdout: str
    stderr: str
    seconds: float


def render(path: Path) -> Rendered:
    """`bgjob-operator render -f path` in process; an exception escapes as itself."""
    from bgjob.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", "-f", str(path)])
    return Rendered(code, out.getvalue(), err.getvalue(), time.monotonic() - start)
