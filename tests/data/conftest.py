"""A failed data stage keeps its validation results and Data Docs in a temporary folder (named in
the log): here that folder is the test's own, not the machine's /tmp."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _validation_folders_in_tmp_path(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
