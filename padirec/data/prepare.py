"""Preprocessing and the leave-one-out split (SPEC section 2, paper A.3).

raw tables -> validated -> duplicates dropped -> time-ordered per user (ties broken by source row
order) -> users with fewer than ``min_interactions`` dropped -> contiguous ids (0 = padding) ->
per user: last interaction = test, second to last = validation, the rest = train -> validated ->
written (Parquet + manifest). Nothing is written unless every check passes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from padirec.artifacts import atomic_write, atomic_write_json, write_manifest
from padirec.data import validation as gxv
from padirec.data.config import DataConfig
from padirec.errors import DataValidationError
from padirec.tracking import NullTracker, Tracker

log = logging.getLogger("padirec")

FILES = ["train.parquet", "valid.parquet", "test.parquet", "items.parquet",
         "id_map_users.parquet", "id_map_items.parquet", "validation.json"]
GENDER_GROUP = {"M": 0, "F": 1}


def prepare(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    out_dir: str | Path,
    cfg: DataConfig,
    tracker: Tracker | None = None,
    min_category_coverage: float = 0.5,
) -> dict[str, Any]:
    """Validate, preprocess, split and write the prepared folder. Returns the manifest."""
    tracker = tracker or NullTracker()
    reports: list[dict] = []

    # 1. the raw tables
    _check(reports, interactions, "raw_interactions_columns",
           [gxv._gxe().ExpectColumnToExist(column=c) for c in ("user_id", "item_id", "timestamp")])
    _check(reports, items, "raw_items_columns",
           [gxv._gxe().ExpectColumnToExist(column=c) for c in ("item_id", "categories")])
    inter = pd.DataFrame({
        "user_id": _ids(interactions["user_id"]),
        "item_id": _ids(interactions["item_id"]),
        "timestamp": _seconds(interactions["timestamp"]),
    })
    items = items.copy()
    items["item_id"] = _ids(items["item_id"])
    items["categories"] = [list(c) if isinstance(c, list | tuple | np.ndarray) else [] for c in items["categories"]]
    items["num_categories"] = [len(c) for c in items["categories"]]
    _check(reports, items.drop(columns=["categories"]), "raw_items", gxv.raw_items_suite(min_category_coverage))
    known = items["item_id"].dropna().unique().tolist()
    shown = interactions.assign(timestamp=interactions["timestamp"])  # offending rows as the user wrote them
    _check(reports, inter, "raw_interactions", gxv.raw_interactions_suite(known), shown=shown)

    # 2. duplicates, order, filter
    inter["source_row"] = np.arange(len(inter))
    n_raw = len(inter)
    inter = inter.drop_duplicates(["user_id", "item_id", "timestamp"], keep="first")
    duplicates = n_raw - len(inter)
    if duplicates:
        log.warning("dropped %d exact duplicate (user, item, timestamp) rows", duplicates)
    inter = inter.sort_values(["user_id", "timestamp", "source_row"], kind="stable")
    ties = int(inter.duplicated(["user_id", "timestamp"], keep=False).sum())
    counts = inter.groupby("user_id", sort=False)["item_id"].transform("size")
    kept = inter[counts >= cfg.min_interactions]
    users_dropped = int(inter["user_id"].nunique() - kept["user_id"].nunique())
    if kept.empty:
        raise DataValidationError(
            f"no user has at least {cfg.min_interactions} interactions (the most any user has is "
            f"{int(counts.max()) if len(counts) else 0}); nothing to split"
        )

    # 3. contiguous ids (sorted source ids, so the mapping is stable across runs)
    user_ids = _natural_sorted(kept["user_id"].unique())
    item_ids = _natural_sorted(kept["item_id"].unique())
    user_map = pd.Series(np.arange(1, len(user_ids) + 1), index=user_ids)
    item_map = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
    kept = kept.assign(user_id=user_map[kept["user_id"]].to_numpy(), item_id=item_map[kept["item_id"]].to_numpy())
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
        _check(reports, df, f"prepared_{name}", gxv.prepared_interactions_suite(num_users, num_items, one))
    cat_bounds = items_out.assign(
        min_category=[min(c) if c else None for c in items_out["categories"]],
        max_category=[max(c) if c else None for c in items_out["categories"]],
    ).drop(columns=["categories"])
    _check(reports, cat_bounds, "prepared_items", gxv.prepared_items_suite(num_items, num_cats))

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
    atomic_write_json(out_dir / "validation.json", {"success": True, "suites": reports})

    lengths = kept.groupby("user_id").size().to_numpy()
    stats = {
        "num_users": num_users, "num_items": num_items, "num_interactions": int(len(kept)),
        "num_categories": num_cats, "num_train": int(len(train)),
        "raw_interactions": n_raw, "duplicates_dropped": duplicates, "users_dropped": users_dropped,
        "same_user_timestamp_ties": round(ties / max(len(inter), 1), 4),
        "category_coverage": round(float((items_out["categories"].str.len() > 0).mean()), 4),
        "density": round(len(kept) / (num_users * num_items), 6),
        "sequence_length": {q: float(np.quantile(lengths, p)) for q, p in
                            (("min", 0), ("p25", .25), ("p50", .5), ("p75", .75), ("p90", .9), ("max", 1))},
    }
    files = [f"{n}.parquet" for n in tables] + ["validation.json"]
    digest = hashlib.sha256("".join(sorted(_sha(out_dir / f) for f in files)).encode()).hexdigest()
    manifest = write_manifest(out_dir, "prepared_data", files, config=asdict(cfg), stats=stats,
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

def _check(reports: list, df: pd.DataFrame, name: str, suite: list, shown: pd.DataFrame | None = None) -> None:
    result = gxv.validate(df, name, suite)
    reports.append({"table": name, "success": result["success"],
                    "failures": gxv.failures(result, shown if shown is not None else df)})
    gxv.raise_on_failure(result, shown if shown is not None else df)


def _ids(col: pd.Series) -> pd.Series:
    """Ids as strings (CSV and Parquet disagree on types); nulls stay null."""
    out = col.astype("string").str.strip()
    return out.where(out.notna() & (out != ""), None).astype(object)


def _seconds(col: pd.Series) -> pd.Series:
    """Timestamps as numbers of seconds; datetimes are converted; anything else becomes NaN
    (and then fails the not-null expectation, which names the rows)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return (col.astype("datetime64[ns]").astype("int64") // 10**9).astype("float64")
    return pd.to_numeric(col, errors="coerce").astype("float64")


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
    from padirec.artifacts import sha256_file

    return sha256_file(path)
