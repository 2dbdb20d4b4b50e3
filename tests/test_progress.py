"""Progress lines go to the ``sys.stderr`` of the moment: a stream captured when logging was set
up (a test's, a notebook cell's) and closed since must not break every later line."""

import io
import logging
import sys

from padirec.runtime.progress import log, setup_logging


def test_progress_follows_the_current_stderr(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    monkeypatch.setattr(log, "handlers", [])  # what earlier tests left on the logger is not under test
    setup_logging(logging.INFO)
    log.info("first line")
    seen_first = first.getvalue()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.info("second line")
    assert "first line" in seen_first and "second line" in second.getvalue()
