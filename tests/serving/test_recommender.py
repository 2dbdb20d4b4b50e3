"""The deployable recommender on a tiny trained system: ranking, the adapter cache, and every
kind of bad request (example-based and property-based). The pyfunc model, ``k``, the task cap,
deadlines and ``padirec recommend`` are in ``tests/serving/``."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from padirec.serving import Recommender, RequestError
from tests.fixtures import SYSTEM_MAX_LEN


def _known(rec, n=3):
    return [s for s in rec.source_id[1:n + 1]]


def test_ranks_unseen_items_with_titles_and_categories(rec):
    history = _known(rec)
    out = rec.recommend(history, [0.3, 0.7], k=5)
    assert len(out["item_ids"]) == 5 and not set(history) & set(out["item_ids"])
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert all(t.startswith("Item") for t in out["titles"]) and all(out["categories"])


def test_adapter_cached_per_task(rec):
    a = rec.adapter((0.2, 0.8))
    assert rec.adapter((0.2, 0.8)) is a
    assert rec.adapter((0.8, 0.2)) is not a


def test_batch_with_mixed_tasks_matches_single_requests(rec):
    h = _known(rec)
    reqs = [{"history": h, "weights": [0.1, 0.9]}, {"history": h[:2], "weights": [0.9, 0.1]}]
    batch = rec.recommend_many(reqs)
    assert batch[0]["item_ids"] == rec.recommend(h, [0.1, 0.9])["item_ids"]
    assert batch[1]["item_ids"] == rec.recommend(h[:2], [0.9, 0.1])["item_ids"]


@pytest.mark.parametrize("history,weights,needle", [
    (["nope"], [0.5, 0.5], "unknown item id"),
    ([], [0.5, 0.5], "non-empty"),
    (None, [0.5, 0.5], "non-empty"),
    ("i1", [0.5, 0.5], "non-empty list"),
    ("LONG", [0.5, 0.5], "reads at most 8"),
    ("OK", [0.5, 0.6], "simplex"),
    ("OK", [-0.5, 1.5], "non-negative"),
    ("OK", [float("nan"), 1.0], "NaN"),
    ("OK", [1.0], "shape"),
    ("OK", "abc", "list of 2 numbers"),
])
def test_bad_requests(rec, history, weights, needle):
    if history == "LONG":
        history = list(rec.source_id[1:SYSTEM_MAX_LEN + 2])
    elif history == "OK":
        history = _known(rec)
    with pytest.raises(RequestError, match=needle):
        rec.recommend(history, weights)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=st.lists(st.one_of(st.sampled_from([f"i{i}" for i in range(60)]), st.text(max_size=4)), max_size=12),
       weights=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=3))
def test_any_request_ranks_or_fails_clearly(rec, history, weights):
    """Property: a request either gets 10 unseen items or a RequestError, never another exception."""
    try:
        out = rec.recommend(history, weights)
    except RequestError:
        return
    assert len(out["item_ids"]) == 10 and not set(map(str, history)) & set(out["item_ids"])


def test_recommend_cli(system, synthetic_prepared, capsys):
    from padirec.commands.cli import main

    assert main(["recommend", "--data", str(synthetic_prepared), "--user", "u1", "--weights", "0.9,0.1",
                 "--system", str(system), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "user u1" in out and out.count("score") == 3
    assert main(["recommend", "--data", str(synthetic_prepared), "--user", "nobody", "--weights", "0.9,0.1",
                 "--system", str(system)]) == 2


def test_system_is_verified(system, tmp_path):
    import shutil

    copy = tmp_path / "s"
    shutil.copytree(system, copy)
    (copy / "generator" / "generator.safetensors").write_bytes(b"truncated")
    from padirec.errors import ArtifactError

    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Recommender(copy)


def test_generate_cli_writes_the_served_adapter(system, tmp_path, capsys):
    from safetensors.torch import load_file

    from padirec.commands.cli import main
    from padirec.diffusion.generator import Generator

    out = tmp_path / "adapter.safetensors"
    assert main(["generate", "--generator", str(system / "generator"), "--weights", "0.3,0.7", "--out", str(out)]) == 0
    params = load_file(str(out))["params"]
    gen = Generator.load(system / "generator")
    assert params.shape == (1, sum(math.prod(t["shape"]) for t in gen.layout))
    assert main(["generate", "--generator", str(system / "generator"), "--weights", "0.3,0.8", "--out", str(out)]) == 2
    assert "simplex" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}"], "padirec: error: --out {tmp} is a folder; name the adapter file to write"),
    (["--seed", str(2**70)], "argument --seed: a seed is a whole number from 0 to 2^63 - 1"),
    (["--seed", "-1"], "argument --seed: a seed is a whole number from 0 to 2^63 - 1"),
])
def test_generate_refuses_a_folder_and_a_seed_torch_cannot_take_in_one_line(system, tmp_path, capsys, args, message):
    from padirec.commands.cli import main

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        rc = main(["generate", "--generator", str(system / "generator"), "--weights", "0.3,0.7", *args])
    except SystemExit as e:  # argparse's own exit for a bad argument
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written
