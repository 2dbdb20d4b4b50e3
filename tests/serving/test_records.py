"""The records of one request are capped (``PADIREC_SERVING_MAX_RECORDS``, a 400 naming it), ranked
in chunks (the same answers as in one pass), and the work stops at the deadline between chunks
(issue 29: 250,000 records once took 5.7 GB and ran 40 s past the 504)."""

import time

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from padirec.serving import (
    DEFAULT_MAX_RECORDS,
    MAX_RECORDS_ENV,
    Recommender,
    RequestError,
    RequestTimeout,
)


def _records(rec, n):
    h = list(rec.source_id[1:4])
    return [{"history": h[: 1 + i % 3], "weights": [0.3, 0.7] if i % 2 else [0.8, 0.2], "k": 3} for i in range(n)]


def test_over_the_cap_is_refused_naming_the_setting(system):
    small = Recommender(system, max_records=5)
    with pytest.raises(RequestError, match=rf"this request has 6 records; at most 5 are allowed per request \({MAX_RECORDS_ENV}\)"):
        small.recommend_many(_records(small, 6))
    assert len(small.recommend_many(_records(small, 5))) == 5


def test_the_cap_is_read_from_the_setting(system, monkeypatch):
    monkeypatch.setenv(MAX_RECORDS_ENV, "7")
    assert Recommender(system).max_records == 7
    monkeypatch.delenv(MAX_RECORDS_ENV)
    assert Recommender(system).max_records == DEFAULT_MAX_RECORDS


def test_a_chunked_request_ranks_as_one_pass(system, rec):
    records = _records(rec, 11)
    chunked = Recommender(system, chunk_rows=3).recommend_many(records)
    whole = rec.recommend_many(records)
    assert [r["item_ids"] for r in chunked] == [r["item_ids"] for r in whole]
    # a batch of another size sums in another order: the last float bits may differ
    assert [r["scores"] for r in chunked] == [pytest.approx(r["scores"], rel=1e-5) for r in whole]
    assert [len(r["item_ids"]) for r in chunked] == [3] * 11


def test_the_work_stops_at_the_deadline_between_chunks(system):
    chunked = Recommender(system, chunk_rows=4)
    with pytest.raises(RequestTimeout, match="stopped after 0 of 3 chunks of 4 records"):
        chunked.recommend_many(_records(chunked, 10), deadline=time.monotonic() - 1)


def test_the_model_refuses_before_copying_the_records(model, rec, monkeypatch):
    """Through the pyfunc model: MLflow's 400 (INVALID_PARAMETER_VALUE), naming the setting."""
    frame = pd.DataFrame(_records(rec, DEFAULT_MAX_RECORDS + 1))
    with pytest.raises(MlflowException) as err:
        model.predict(frame)
    assert err.value.get_http_status_code() == 400 and MAX_RECORDS_ENV in err.value.message
