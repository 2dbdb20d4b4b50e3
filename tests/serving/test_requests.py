"""Serving requests on the real tiny system, in the library and through the real pyfunc model:
``k`` (argument, params, per record; checked against the items a request can rank), the cap on
distinct weight vectors, the deadline, and bad requests as MLflow's INVALID_PARAMETER_VALUE."""

import time

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from padirec.errors import ConfigError
from padirec.serving import (
    DEFAULT_MAX_TASKS,
    MAX_TASKS_ENV,
    SERVING_THREADS_ENV,
    Recommender,
    RequestError,
    RequestTimeout,
    serving_threads,
)


def _history(rec, n=3):
    return list(rec.source_id[1:n + 1])


def test_k_per_call_and_per_record(rec):
    h = _history(rec)
    assert len(rec.recommend(h, [0.3, 0.7], k=3)["item_ids"]) == 3
    out = rec.recommend_many([{"history": h, "weights": [0.3, 0.7], "k": 2},
                              {"history": h, "weights": [0.3, 0.7]}], k=4)
    assert [len(o["item_ids"]) for o in out] == [2, 4]
    assert out[0]["item_ids"] == out[1]["item_ids"][:2]


def test_k_up_to_every_rankable_item_never_lists_history_or_padding(rec):
    h = _history(rec, 5)
    rankable = rec.backbone.num_items - 5
    out = rec.recommend(h, [0.5, 0.5], k=rankable)["item_ids"]
    assert len(out) == len(set(out)) == rankable
    assert not set(out) & set(h) and "" not in out  # "" is the padding item's source id
    with pytest.raises(RequestError, match=f"k must be between 1 and {rankable} .* got {rankable + 1}"):
        rec.recommend(h, [0.5, 0.5], k=rankable + 1)
    with pytest.raises(RequestError, match="got 10000"):
        rec.recommend(h, [0.5, 0.5], k=10_000)  # more than the catalogue


@pytest.mark.parametrize("k,needle", [(0, "between 1 and"), (-3, "got -3"), (2.5, "whole number"), (True, "whole number"),
                                      ("3", "whole number"), (float("nan"), "whole number"), (float("inf"), "whole number")])
def test_bad_k(rec, k, needle):
    with pytest.raises(RequestError, match=needle):
        rec.recommend(_history(rec), [0.5, 0.5], k=k)


def test_k_as_whole_float_is_accepted(rec):
    """A DataFrame column of k with some records missing it holds floats (3.0)."""
    assert len(rec.recommend(_history(rec), [0.5, 0.5], k=3.0)["item_ids"]) == 3


@pytest.mark.parametrize("ts,needle", [([1, 2], "2 values for 3"), ([1, 2, float("nan")], "finite"), ([1, 2, -1], "non-negative"),
                                       ("abc", "list of numbers"), ([1, 2, "noon"], "list of numbers"), (5, "list of numbers"),
                                       ("123", "list of numbers"), ({"a": 1, "b": 2, "c": 3}, "list of numbers")])
def test_bad_timestamps(rec, ts, needle):
    with pytest.raises(RequestError, match=f"timestamps.*{needle}|{needle}"):
        rec.recommend(_history(rec), [0.5, 0.5], timestamps=ts)


def test_record_named_in_a_batch(rec):
    reqs = [{"history": _history(rec), "weights": [0.5, 0.5]}, {"history": ["nope"], "weights": [0.5, 0.5]}]
    with pytest.raises(RequestError, match=r"^record 1: history has unknown item id\(s\) \['nope'\] .*no item this model knows"):
        rec.recommend_many(reqs)


def test_unknown_history_items_are_dropped_and_listed(rec):
    """An item new to the catalogue since training: the request is ranked on the known items, as if
    the client had not sent it (its timestamp goes with it), and the reply lists it."""
    h = _history(rec)
    plain = rec.recommend(h, [0.3, 0.7], k=5, timestamps=[10, 20, 30])
    assert plain["ignored"] == []
    mixed = rec.recommend(["new-1", *h[:2], 4711, h[2]], [0.3, 0.7], k=5, timestamps=[5, 10, 20, 25, 30])
    assert mixed["ignored"] == ["new-1", "4711"]
    assert mixed["item_ids"] == plain["item_ids"] and mixed["scores"] == plain["scores"]
    # k is checked against the items the request can rank: the known history is not listed
    rankable = rec.backbone.num_items - 3
    assert len(rec.recommend(["new-1", *h], [0.5, 0.5], k=rankable)["item_ids"]) == rankable
    with pytest.raises(RequestError, match="timestamps has 3 values for 4 history items"):
        rec.recommend(["new-1", *h], [0.5, 0.5], timestamps=[1, 2, 3])


def test_a_history_of_only_unknown_items_is_refused(rec):
    with pytest.raises(RequestError, match=r"^history has unknown item id\(s\) \['a', 'b'\] \(2 in all\) and no item "
                                           "this model knows: nothing to rank from$"):
        rec.recommend(["a", "b"], [0.5, 0.5])


def test_unknown_item_share_of_a_newer_snapshot(synthetic_prepared, tmp_path):
    """The share of a newer snapshot's test users whose request held an item the model does not
    know: here the newer snapshot renames 5 items, so they are new to the model."""
    import shutil

    from padirec.serving import unknown_item_share

    new = tmp_path / "new"
    shutil.copytree(synthetic_prepared, new)
    ids = pd.read_parquet(new / "id_map_items.parquet")
    renamed = set(ids["item_id"].iloc[:5])
    ids["source_id"] = [f"new-{s}" if i in renamed else s for i, s in zip(ids["item_id"], ids["source_id"], strict=True)]
    ids.to_parquet(new / "id_map_items.parquet", index=False)

    assert unknown_item_share(synthetic_prepared, synthetic_prepared) == {
        "test_users": 120, "with_unknown": 0, "all_unknown": 0, "share_with_unknown": 0.0, "share_all_unknown": 0.0}
    seen = pd.concat([pd.read_parquet(new / f) for f in ("train.parquet", "valid.parquet")])
    for max_len in (None, 2):
        hist = seen.groupby("user_id").tail(max_len) if max_len else seen  # train is in time order already
        flags = hist["item_id"].isin(renamed).groupby(hist["user_id"])
        got = unknown_item_share(synthetic_prepared, new, max_len=max_len)
        assert got["test_users"] == 120 and got["with_unknown"] == int(flags.any().sum()) > 0
        assert got["all_unknown"] == int(flags.all().sum())
        assert got["share_with_unknown"] == got["with_unknown"] / 120


def test_distinct_tasks_per_request_are_capped(rec):
    h = _history(rec)
    n = DEFAULT_MAX_TASKS + 1
    reqs = [{"history": h, "weights": [i / n, 1 - i / n]} for i in range(n)]
    with pytest.raises(RequestError, match=f"{n} distinct weight vectors; at most {DEFAULT_MAX_TASKS} .*{MAX_TASKS_ENV}"):
        rec.recommend_many(reqs)
    # the same vector many times is one task
    assert len(rec.recommend_many([{"history": h, "weights": [0.5, 0.5]}] * (2 * n))) == 2 * n


def test_task_cap_setting(system, monkeypatch):
    monkeypatch.setenv(MAX_TASKS_ENV, "2")
    assert Recommender(system).max_tasks == 2
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv(MAX_TASKS_ENV, bad)
        with pytest.raises(ConfigError, match=MAX_TASKS_ENV):
            Recommender(system)


def test_serving_threads_setting(monkeypatch):
    monkeypatch.delenv(SERVING_THREADS_ENV, raising=False)
    assert serving_threads(in_server=True) == 1 and serving_threads(in_server=False) is None
    monkeypatch.setenv(SERVING_THREADS_ENV, "3")
    assert serving_threads(in_server=True) == 3 == serving_threads(in_server=False)
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv(SERVING_THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=f"{SERVING_THREADS_ENV}='{bad}': expected a whole number >= 1"):
            serving_threads(in_server=True)


def test_a_scoring_worker_serves_on_one_thread_a_caller_keeps_its_own(model_path, monkeypatch):
    """The pyfunc model sets torch's threads only in a worker of MLflow's scoring server, which it
    knows by the variable the server gives each worker."""
    import mlflow
    import torch
    from mlflow.pyfunc import scoring_server

    from padirec.tracking.pyfunc_model import SERVER_MODEL_PATH_ENV

    assert SERVER_MODEL_PATH_ENV == scoring_server._SERVER_MODEL_PATH  # MLflow's name for it
    monkeypatch.delenv(SERVING_THREADS_ENV, raising=False)
    monkeypatch.delenv(SERVER_MODEL_PATH_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mlflow.pyfunc.load_model(str(model_path))
        assert torch.get_num_threads() == 2  # in-process: the caller's setting
        monkeypatch.setenv(SERVER_MODEL_PATH_ENV, str(model_path))
        mlflow.pyfunc.load_model(str(model_path))
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(SERVING_THREADS_ENV, "2")
        mlflow.pyfunc.load_model(str(model_path))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_deadline_stops_the_work_between_tasks(system):
    rec = Recommender(system, max_tasks=1000, chunk_rows=1000)  # one chunk: the stop falls between tasks
    h = _history(rec)
    started = time.monotonic()
    rec.adapter((0.123, 0.877))
    one = time.monotonic() - started  # one generation
    reqs = [{"history": h, "weights": [i / 500, 1 - i / 500]} for i in range(500)]
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"stopped after (\d+) of 500") as err:
        rec.recommend_many(reqs, deadline=started + 3 * one)
    done = int(err.value.args[0].split("after ")[1].split(" of")[0])
    assert done < 500 and time.monotonic() - started < 8 * one + 2  # stopped within about one task of it
    with pytest.raises(RequestTimeout, match="after 0 of 1"):
        rec.recommend_many(reqs[:1], deadline=time.monotonic() - 1)


# ---------------------------------------------------------------- the pyfunc model

def _frame(rec, **extra):
    return pd.DataFrame([{"history": _history(rec), "weights": [0.3, 0.7], **extra}])


def test_pyfunc_reply_lists_the_ignored_items(model, rec):
    out = model.predict(pd.DataFrame([{"history": ["new-1", *_history(rec)], "weights": [0.3, 0.7]},
                                      {"history": _history(rec), "weights": [0.3, 0.7]}]), params={"k": 3})
    assert out["ignored"].tolist() == [["new-1"], []]
    assert out["item_ids"].iloc[0] == out["item_ids"].iloc[1]


def test_pyfunc_k_from_params_and_per_record(model, rec):
    assert len(model.predict(_frame(rec), params={"k": 3}).iloc[0]["item_ids"]) == 3
    assert len(model.predict(_frame(rec)).iloc[0]["item_ids"]) == 10
    both = pd.DataFrame([{"history": _history(rec), "weights": [0.3, 0.7], "k": 2},
                         {"history": _history(rec), "weights": [0.3, 0.7]}])  # k is NaN in the second row
    assert [len(x) for x in model.predict(both, params={"k": 4})["item_ids"]] == [2, 4]


@pytest.mark.slow
def test_without_the_signature_mlflow_drops_params(system, tmp_path, rec):
    """Why ``model_signature`` exists: MLflow ignores ``params`` of a model without a params schema."""
    import mlflow

    from tests.fixtures import save_model

    bare = mlflow.pyfunc.load_model(str(save_model(system, tmp_path / "m", signature=False)))
    assert len(bare.predict(_frame(rec), params={"k": 3}).iloc[0]["item_ids"]) == 10
    assert len(bare.predict(_frame(rec, k=3)).iloc[0]["item_ids"]) == 3  # per record still works


@pytest.mark.parametrize("record,params,needle", [
    ({"history": ["nope"]}, None, "history has unknown item id(s) ['nope'] (1 in all) and no item this model knows"),
    ({"weights": [float("nan"), 1.0]}, None, "weights: task weights contain NaN"),
    ({"history": [f"i{i}" for i in range(10_000)]}, None, "history has 10000 items; this model reads at most 8"),
    ({"k": -3}, None, "k must be between 1 and"),
    ({}, {"k": -3}, "k must be between 1 and"),
])
def test_pyfunc_bad_request_is_invalid_parameter_value(model, rec, record, params, needle):
    with pytest.raises(MlflowException) as err:
        model.predict(pd.DataFrame([{"history": _history(rec), "weights": [0.3, 0.7], **record}]), params=params)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE" and needle in err.value.message
    assert err.value.get_http_status_code() == 400 and "Traceback" not in err.value.serialize_as_json()


def test_pyfunc_deadline_from_the_server_timeout(model, rec, monkeypatch):
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "0.000001")
    reqs = pd.DataFrame([{"history": _history(rec), "weights": [i / 10, 1 - i / 10]} for i in range(10)])
    with pytest.raises(MlflowException) as err:
        model.predict(reqs)
    assert err.value.error_code == "DEADLINE_EXCEEDED" and err.value.get_http_status_code() == 504
