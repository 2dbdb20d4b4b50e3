"""Progress for long work: one line per step to stderr via logging (works in KFP logs too)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("padirec")


def setup_logging(level: int = logging.INFO) -> None:
    """Progress lines of the ``padirec`` logger to stderr (only ours: KFP's runner logs its own)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s padirec %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
