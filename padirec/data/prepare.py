"""Preprocessing and the leave-one-out split (paper A.3).

raw tables -> validated -> duplicates dropped -> time-ordered per user (ties broken by source row
order) -> users with fewer than ``min_interactions`` dropped -> contiguous ids (0 = padding) ->
per user: last interaction = test, second to last = validation, the rest = train -> validated ->
written (Parquet + manifest). Nothing is written unless every check passes.

Timestamps may be numbers (seconds), datetimes (naive ones are read as UTC, timezone-aware ones
converted) or ISO-8601 strings; all become whole seconds since 1970-01-01 UTC. Ids are integers or
strings. Any other type (a boolean, a record, a list) is refused, naming the column
(``padirec.data.columns``, the rule for every source).

Data that cannot train is refused here, not later in the backbone: after filtering there must be
at least ``min_users`` users (2: one user gives no spread to evaluate) and ``min_items`` items
(at least 2 always; by default ``MIN_ITEMS`` = 10, the @10 of the backbone's metrics; the pipeline
passes ``max(10, evaluation.k)`` so that every top-k list can be filled).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from padirec.core.tracker import NullTracker, Tracker
from padirec.data import validation as gxv
from padirec.data.columns import frame_problem
from padirec.data.config import DataConfig
from padirec.errors import DataValidationError
from padirec.runtime.artifacts import atomic_write, atomic_write_json, write_manifest

log = logging.getLogger("padirec")

FILES = ["train.parquet", "valid.parquet", "test.parquet", "items.parquet",
         "id_map_users.parquet", "id_map_items.parquet", "validation.json"]
GENDER_GROUP = {"M": 0, "F": 1}
MIN_USERS = 2
MIN_ITEMS = 10  # the backbone reports NDCG/HR@10, so a ranking must have 10 items to fill
EPOCH = pd.Timestamp(0, tz="UTC")


def prepare(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    out_dir: str | Path,
    cfg: DataConfig,
    tracker: Tracker | None = None,
    min_category_coverage: float = 0.5,
    min_users: int = MIN_USERS,
    min_items: int = MIN_ITEMS,
) -> dict[str, Any]:
    """Validate, preprocess, split and write the prepared folder. Returns the manifest.

    The validation results and their Data Docs go to ``tracker`` (``data/``), on failure too
    (``padirec.data.validation.Validation``)."""
    tracker = tracker or NullTracker()
    with gxv.Validation(tracker) as checks:
        return _prepare(checks, interactions, items, users, out_dir, cfg, tracker, min_category_coverage,
                        min_users, min_items)


def _prepare(checks: gxv.Validation, interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None,
             out_dir: str | Path, cfg: DataConfig, tracker: Tracker, min_category_coverage: float,
             min_users: int, min_items: int) -> dict[str, Any]:
    # 1. the raw tables
    checks.check(interactions, "raw_interactions_columns",
                 [gxv._gxe().ExpectColumnToExist(column=c) for c in ("user_id", "item_id", "timestamp")])
    checks.check(items, "raw_items_columns", [gxv._gxe().ExpectColumnToExist(column=c) for c in ("item_id", "categories")])
    # every source's tables (a file's were checked as it was read, naming it: ``read_table``)
    for name, table in (("interactions", interactions), ("items", items), ("users", users)):
        if table is not None and (problem := frame_problem(table, name == "interactions")):
            raise DataValidationError(f"{name} table: {problem}")
    inter = pd.DataFrame({
        "user_id": _ids(interactions["user_id"]),
        "item_id": _ids(interactions["item_id"]),
        "timestamp": _seconds(interactions["timestamp"]),
    })
    items = items.copy()
    items["item_id"] = _ids(items["item_id"])
    items["categories"] = [list(c) if isinstance(c, list | tuple | np.ndarray) else [] for c in items["categories"]]
    items["num_categories"] = [len(c) for c in items["categories"]]
    checks.check(items.drop(columns=["categories"]), "raw_items", gxv.raw_items_suite(min_category_coverage))
    known = items["item_id"].dropna().unique().tolist()
    shown = interactions.assign(timestamp=interactions["timestamp"])  # offending rows as the user wrote them
    checks.check(inter, "raw_interactions", gxv.raw_interactions_suite(known), shown=shown)

    # 2. duplicates and filter, on integer codes of the ids: hashing and sorting the id strings
    # took half of the stage's time at 10x ML-1M. Equal strings have equal codes, and the order
    # of the rows is set once, after step 3 (contiguous ids, then time, then source row).
    user_code, user_source = pd.factorize(inter["user_id"])
    item_code, item_source = pd.factorize(inter["item_id"])
    coded = pd.DataFrame({"user_id": user_code, "item_id": item_code, "timestamp": inter["timestamp"].to_numpy(),
                          "source_row": np.arange(len(inter))})
    n_raw = len(coded)
    coded = coded.drop_duplicates(["user_id", "item_id", "timestamp"], keep="first")
    duplicates = n_raw - len(coded)
    if duplicates:
        log.warning("dropped %d exact duplicate (user, item, timestamp) rows", duplicates)
    ties = int(coded.duplicated(["user_id", "timestamp"], keep=False).sum())
    counts = coded.groupby("user_id", sort=False)["item_id"].transform("size")
    kept = coded[counts >= cfg.min_interactions]
    users_dropped = int(coded["user_id"].nunique() - kept["user_id"].nunique())
    if kept.empty:
        raise DataValidationError(
            f"no user has at least {cfg.min_interactions} interactions (the most any user has is "
            f"{int(counts.max()) if len(counts) else 0}); nothing to split"
        )
    _check_trainable(kept, cfg.min_interactions, min_users, min_items)

    # 3. contiguous ids (sorted source ids, so the mapping is stable across runs)
    user_ids = _natural_sorted(user_source[np.unique(kept["user_id"].to_numpy())])
    item_ids = _natural_sorted(item_source[np.unique(kept["item_id"].to_numpy())])
    user_map = pd.Series(np.arange(1, len(user_ids) + 1), index=user_ids)
    item_map = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
    new_user = pd.Index(user_ids).get_indexer(user_source) + 1  # code -> contiguous id (0: a dropped user)
    new_item = pd.Index(item_ids).get_indexer(item_source) + 1
    kept = kept.assign(user_id=new_user[kept["user_id"].to_numpy()], item_id=new_item[kept["item_id"].to_numpy()])
    kept = kept.sort_values(["user_id", "timestamp", "source_row"], kind="stable")

    items = items.drop_duplicates("item_id").set_index("item_id").loc[item_ids].reset_index()
    category_names = sorted({c for cats in items["categories"] for c in cats})
    cat_index = {c: i for i, c in enumerate(category_names)}
    items_out = pd.DataFrame({
        "item_id": item_map[items["item_id"]].to_numpy(),
        "categories": [sorted(cat_index[c] for c in set(cats)) for cats in items["categories"]],
        "title": items["title"].fillna("").astype(str) if "title" in items else "",
    })

    # 4. leave-one-out split
    from_end = kept.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    cols = ["user_id", "item_id", "timestamp"]
    train = kept.loc[from_end >= 2, cols].reset_index(drop=True)
    valid = kept.loc[from_end == 1, cols].reset_index(drop=True)
    test = kept.loc[from_end == 0, cols].reset_index(drop=True)
    num_users, num_items, num_cats = len(user_ids), len(item_ids), len(category_names)

    # 5. the prepared tables
    for name, df, one in (("train", train, False), ("valid", valid, True), ("test", test, True)):
        checks.check(df, f"prepared_{name}", gxv.prepared_interactions_suite(num_users, num_items, one))
    cat_bounds = items_out.assign(
        min_category=[min(c) if c else None for c in items_out["categories"]],
        max_category=[max(c) if c else None for c in items_out["categories"]],
    ).drop(columns=["categories"])
    checks.check(cat_bounds, "prepared_items", gxv.prepared_items_suite(num_items, num_cats))

    users_out = _users_table(users, user_map)

    # 6. write (every check has passed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"train": train, "valid": valid, "test": test, "items": items_out,
              "id_map_users": pd.DataFrame({"user_id": user_map.to_numpy(), "source_id": user_map.index.astype(str)}),
              "id_map_items": pd.DataFrame({"item_id": item_map.to_numpy(), "source_id": item_map.index.astype(str)})}
    if users_out is not None:
        tables["users"] = users_out
    for name, df in tables.items():
        atomic_write(out_dir / f"{name}.parquet", lambda tmp, d=df: d.to_parquet(tmp, index=False))
    atomic_write_json(out_dir / "validation.json", checks.report())

    lengths = kept.groupby("user_id").size().to_numpy()
    stats = {
        "num_users": num_users, "num_items": num_items, "num_interactions": int(len(kept)),
        "num_categories": num_cats, "num_train": int(len(train)),
        "raw_interactions": n_raw, "duplicates_dropped": duplicates, "users_dropped": users_dropped,
        "same_user_timestamp_ties": round(ties / max(len(coded), 1), 4),
        "category_coverage": round(float((items_out["categories"].str.len() > 0).mean()), 4),
        "density": round(len(kept) / (num_users * num_items), 6),
        "sequence_length": {q: float(np.quantile(lengths, p)) for q, p in
                            (("min", 0), ("p25", .25), ("p50", .5), ("p75", .75), ("p90", .9), ("max", 1))},
    }
    files = [f"{n}.parquet" for n in tables]
    # the data's checksum: the tables only (validation.json holds run times and ids)
    digest = hashlib.sha256("".join(sorted(_sha(out_dir / f) for f in files)).encode()).hexdigest()
    manifest = write_manifest(out_dir, "prepared_data", files + ["validation.json"], config=asdict(cfg), stats=stats,
                              category_names=category_names, data_checksum=digest)
    log.info("prepared %d users, %d items, %d interactions, %d categories -> %s",
             num_users, num_items, len(kept), num_cats, out_dir)
    tracker.log_metrics({k: v for k, v in stats.items() if isinstance(v, int | float)})
    return manifest


def prepare_synthetic(out_dir: str | Path, cfg: DataConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """Generate synthetic tables (``padirec.data.synthetic.generate(**kwargs)``) and prepare them."""
    from padirec.data.synthetic import generate

    inter, items, users = generate(**kwargs)
    return prepare(inter, items, users, out_dir, cfg or DataConfig(source="synthetic"))


# ---------------------------------------------------------------- helpers

def _ids(col: pd.Series) -> pd.Series:
    """Ids as strings (CSV and Parquet disagree on types); nulls stay null. Arrow-backed strings,
    not Python objects: at 10M interactions the objects alone took gigabytes."""
    out = col.astype("string").str.strip()
    return out.where(out.notna() & (out != ""), None)


def _check_trainable(kept: pd.DataFrame, min_interactions: int, min_users: int, min_items: int) -> None:
    users, items = int(kept["user_id"].nunique()), int(kept["item_id"].nunique())
    after = f"after dropping users with fewer than {min_interactions} interactions (data.min_interactions)"
    if users < min_users:
        raise DataValidationError(f"interactions: only {users} user(s) left {after}; training and evaluation "
                                  f"need at least {min_users}")
    need = max(2, min_items)
    if items < need:
        raise DataValidationError(f"interactions: only {items} distinct item_id(s) left {after}; ranking needs at "
                                  f"least {need} items (top-{min_items} lists: the backbone's @10 metrics and "
                                  "evaluation.k)")


def _seconds(col: pd.Series) -> pd.Series:
    """Timestamps as seconds since the epoch (float64). Numbers stay; datetimes and ISO-8601
    strings are converted (naive = UTC), floored to whole seconds; anything else becomes NaN and
    then fails the not-null expectation, which names the rows."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return _epoch_seconds(pd.to_datetime(col, utc=True))  # utc=True: tz-aware and naive alike
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    out = pd.to_numeric(col, errors="coerce").astype("float64")
    rest = out.isna() & col.notna()
    if rest.any():
        try:
            out[rest] = _epoch_seconds(pd.to_datetime(col[rest], utc=True, errors="coerce", format="ISO8601"))
        except (TypeError, ValueError, OverflowError):
            pass  # values no parser reads (lists, mixed objects) stay NaN and are named by the check
    return out


def _epoch_seconds(dates: pd.Series) -> pd.Series:
    return ((dates - EPOCH) // pd.Timedelta(seconds=1)).astype("float64")


def _natural_sorted(values: np.ndarray) -> list:
    try:
        return sorted(values, key=lambda v: (int(v), v))
    except (TypeError, ValueError):
        return sorted(values)


def _users_table(users: pd.DataFrame | None, user_map: pd.Series) -> pd.DataFrame | None:
    if users is None or "user_id" not in users:
        return None
    users = users.assign(user_id=_ids(users["user_id"])).drop_duplicates("user_id")
    users = users[users["user_id"].isin(user_map.index)]
    if "group" in users:
        group = pd.to_numeric(users["group"], errors="coerce").fillna(-1).astype("int64")
    elif "gender" in users:
        group = users["gender"].astype(str).str.upper().map(GENDER_GROUP).fillna(-1).astype("int64")
    else:
        return None
    out = pd.DataFrame({"user_id": user_map[users["user_id"]].to_numpy(), "group": group.to_numpy()})
    if "gender" in users:
        out["gender"] = users["gender"].astype(str).to_numpy()
    return out.sort_values("user_id").reset_index(drop=True)


def _sha(path: Path) -> str:
    from padirec.runtime.artifacts import sha256_file

    return sha256_file(path)
