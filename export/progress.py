"""Progress of a build on stderr, in one place: the orchestrator (`export.pipeline`) names the
steps; a stage that has more to say (the data-quality table, each model's scores) is handed
`say`, never the step counter."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Say = Callable[[str], None]


class Progress:
    """Step-by-step progress on stderr: long steps say what they are doing and how long it took."""

    def __init__(self, total: int, stream: Any = None, quiet: bool = False) -> None:
        self.total, self.stream, self.quiet, self.done = total, stream, quiet, 0
        self.started = time.perf_counter()

    def step(self, name: str) -> _Step:
        self.done += 1
        return _Step(self, name)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stderr, flush=True)


class _Step:
    def __init__(self, progress: Progress, name: str) -> None:
        self.progress, self.name = progress, name

    def __enter__(self) -> _Step:
        p = self.progress
        p.say(f"[{p.done}/{p.total}] {self.name} …")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            p = self.progress
            p.say(f"[{p.done}/{p.total}] {self.name}: done in {time.perf_counter() - self.t0:.1f}s")


@contextmanager
def timed(say: Say, part: str) -> Iterator[None]:
    """A part of a step: says how long it took, indented under the step's lines (what a shop
    sizing a cluster for the Spark engine reads, `bench/bench_build.py` records it)."""
    started = time.perf_counter()
    yield
    say(f"  {part}: {time.perf_counter() - started:.1f}s")
