"""Progress for long work: one line per step to stderr via logging (works in KFP logs too)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("padirec")


def setup_logging(level: int = logging.INFO) -> None:
    """Progress lines of the ``padirec`` logger to stderr (only ours: KFP's runner logs its own)."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s padirec %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the line, not the one it was made with
    (that one may be a capture closed since: a notebook cell's, a test's)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
