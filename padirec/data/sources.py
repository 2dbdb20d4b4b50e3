"""Data sources -> three raw tables in one shape.

Every source returns ``(interactions, items, users)``:
- interactions: ``user_id``, ``item_id`` (source ids, any type), ``timestamp`` (as read), in
  source row order (the tie rule of the split depends on it);
- items: ``item_id``, ``categories`` (list of category names), ``title`` (optional);
- users: ``user_id`` and ``gender`` where the source has it, else ``None``.
"""

from __future__ import annotations

import ast
import gzip
import json
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from padirec.data.base import SOURCES, RawTables, Source, register_source
from padirec.data.columns import frame_problem, schema_problem
from padirec.data.config import DataConfig
from padirec.data.parquet_dataset import is_dataset, read_dataset
from padirec.errors import DataValidationError, PadirecError
from padirec.runtime.storage import is_s3, localize, localize_folder

REQUIRED_INTERACTIONS = ("user_id", "item_id", "timestamp")


def load_source(cfg: DataConfig) -> RawTables:
    """The raw tables of ``cfg.source``, a registered source (``padirec.data.registry``; a plugin's
    once the config has loaded it). Every folder and file may be local or ``s3://`` (downloaded for
    the read, then removed). ``cfg`` has its ``{snapshot}`` filled already (``DataConfig.for_snapshot``)."""
    if cfg.source not in SOURCES:
        raise PadirecError(f"unknown data source {cfg.source!r}; valid: {', '.join(SOURCES)} (a plugin's source: "
                           "name its file in the config's plugins or in PADIREC_PLUGINS)")
    return SOURCES[cfg.source].load(cfg, cfg.settings_for(cfg.source))


def _need(value: str, name: str) -> str:
    if not value:
        raise PadirecError(f"{name} must be set for this data source")
    return value


# ---------------------------------------------------------------- the built-in sources

@register_source
class MovieLens100K(Source):
    """``ml-100k``: embedded (from the recbole wheel), or a mirror in ``data.path``."""

    name = "ml-100k"

    @staticmethod
    def load(data: DataConfig, settings: Any) -> RawTables:
        from padirec.data.movielens100k import FILES, load_ml100k

        if not is_s3(data.path):
            return load_ml100k(data.path or None)
        with tempfile.TemporaryDirectory(prefix="padirec-ml100k-") as tmp:
            return load_ml100k(_folder(data.path, tmp, FILES, "MovieLens-100K"))


@register_source
class MovieLens1M(Source):
    """``ml-1m``: ``data.path`` is a folder with ratings.dat, movies.dat, users.dat."""

    name = "ml-1m"
    folder_files = "ratings.dat (ML-1M)"

    @staticmethod
    def recognises(folder: Path) -> bool:
        return (folder / "ratings.dat").is_file()

    @staticmethod
    def load(data: DataConfig, settings: Any) -> RawTables:
        path = _need(data.path, "data.path (folder with ratings.dat, movies.dat, users.dat)")
        with tempfile.TemporaryDirectory(prefix="padirec-ml1m-") as tmp:
            return load_ml1m(_folder(path, tmp, ML1M_FILES, "MovieLens-1M"), where=path)


@register_source
class Amazon(Source):
    """``amazon``: ``data.path`` is a folder with the reviews and metadata files."""

    name = "amazon"
    folder_files = "meta_*.json[.gz] (Amazon)"

    @staticmethod
    def recognises(folder: Path) -> bool:
        return any(folder.glob("meta_*.json*"))

    @staticmethod
    def load(data: DataConfig, settings: Any) -> RawTables:
        path = _need(data.path, "data.path (folder with reviews and metadata files)")
        with tempfile.TemporaryDirectory(prefix="padirec-amazon-") as tmp:
            local = localize_folder(path, tmp, lambda name: ".json" in name)
            return load_amazon(str(local), data.max_category_groups, where=path)


@register_source
class Tables(Source):
    """``tables``: a user's ``data.interactions``, ``data.items`` (and ``data.users``) files."""

    name = "tables"

    @staticmethod
    def load(data: DataConfig, settings: Any) -> RawTables:
        return load_tables(_need(data.interactions, "data.interactions"), _need(data.items, "data.items"),
                           data.users or None)


@register_source
class Synthetic(Source):
    """``synthetic``: generated (``padirec.data.synthetic``), with ``data.synthetic``'s keyword
    arguments (kept there as given: the dataset's name records them)."""

    name = "synthetic"

    @staticmethod
    def load(data: DataConfig, settings: Any) -> RawTables:
        from padirec.data.synthetic import generate

        return generate(**data.synthetic)


def _folder(uri: str, tmp: str, names: tuple[str, ...], what: str) -> Path:
    """A local copy of the files ``names`` of folder ``uri`` (local or s3://); a missing file is
    an error naming it (the first of ``names`` is required)."""
    if not is_s3(uri):
        return Path(uri)
    local = localize_folder(uri, tmp, lambda name: name in names)
    if not (local / names[0]).exists():
        raise PadirecError(f"{what}: {uri.rstrip('/')}/{names[0]} not found")
    return local


# ---------------------------------------------------------------- MovieLens-1M

ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")


def load_ml1m(folder: str | Path, where: str = "") -> RawTables:
    """``ratings.dat`` (UserID::MovieID::Rating::Timestamp), ``movies.dat``
    (MovieID::Title::Genre|Genre), ``users.dat`` (UserID::Gender::Age::Occupation::Zip).
    ``where``: the folder as configured (an s3:// URI), for messages."""
    base = Path(folder)
    where = (where or str(base)).rstrip("/")
    for f in ("ratings.dat", "movies.dat"):
        if not (base / f).exists():
            raise PadirecError(f"MovieLens-1M: {where}/{f} not found")

    def read(name: str, cols: list[str]) -> pd.DataFrame:
        text = (base / name).read_bytes().decode("latin-1")
        rows = [line.split("::") for line in text.splitlines() if line]
        bad = [i for i, r in enumerate(rows) if len(r) != len(cols)]
        if bad:
            raise DataValidationError(f"{base / name}: line {bad[0] + 1} has {len(rows[bad[0]])} fields, expected {len(cols)} separated by '::'")
        return pd.DataFrame(rows, columns=cols)

    ratings = read("ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
    movies = read("movies.dat", ["item_id", "title", "genres"])
    items = pd.DataFrame({"item_id": movies["item_id"], "categories": [g.split("|") for g in movies["genres"]],
                          "title": movies["title"]})
    users = None
    if (base / "users.dat").exists():
        users = read("users.dat", ["user_id", "gender", "age", "occupation", "zip"])[["user_id", "gender"]]
    return ratings[list(REQUIRED_INTERACTIONS)], items, users


# ---------------------------------------------------------------- Amazon

def load_amazon(folder: str | Path, max_groups: int = 0, where: str = "") -> RawTables:
    """Amazon Grocery & Gourmet Food: a reviews file (``*reviews*.json[.gz]`` or
    ``Grocery_and_Gourmet_Food*.json[.gz]``: one JSON object per line with ``reviewerID``,
    ``asin``, ``unixReviewTime``) and a metadata file (``meta_*.json[.gz]``, JSON lines or the
    2014 dump's Python-literal lines, with ``categories`` (2014) or ``category`` (2018)).
    Categories are the path below the root; ``max_groups > 0`` keeps the most frequent
    ``max_groups - 1`` and merges the rest into ``other``. ``where``: the folder as configured."""
    base = Path(folder)
    metas = sorted(base.glob("meta_*.json*"))
    reviews = sorted(p for p in base.glob("*.json*") if p not in metas)
    if not reviews or not metas:
        raise PadirecError(f"Amazon: expected a reviews file and a meta_*.json[.gz] file in {where or base}")
    inter = pd.DataFrame(
        [(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in _json_lines(reviews[0])],
        columns=list(REQUIRED_INTERACTIONS),
    )
    rows = []
    for m in _json_lines(metas[0]):
        if "categories" in m:  # 2014: a list of category paths
            paths = m["categories"]
        else:  # 2018: one path
            paths = [m.get("category", [])]
        cats = sorted({c for path in paths for c in path[1:]} or {c for path in paths for c in path[:1]})
        rows.append((m["asin"], cats, m.get("title", "")))
    items = pd.DataFrame(rows, columns=["item_id", "categories", "title"]).drop_duplicates("item_id")
    if max_groups > 0:
        counts = Counter(c for cats in items["categories"] for c in cats)
        keep = {c for c, _ in counts.most_common(max_groups - 1)}
        items["categories"] = [sorted({c if c in keep else "other" for c in cats}) for cats in items["categories"]]
    return inter, items, None


def _json_lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                try:  # the 2014 metadata dump is Python literals, not JSON; literal_eval is safe
                    yield ast.literal_eval(line)
                except (ValueError, SyntaxError) as e:
                    raise DataValidationError(f"{path}: line {n} is neither JSON nor a literal: {line[:80]!r}") from e


# ---------------------------------------------------------------- user tables

def load_tables(interactions: str, items: str, users: str | None = None) -> RawTables:
    """A user's own tables, CSV or Parquet, local or s3://. In CSV, ``categories`` is a
    ``|``-separated string; in Parquet, a list or such a string."""
    inter = read_table(interactions, "interactions")
    items_df = read_table(items, "items")
    if "categories" in items_df.columns:
        items_df["categories"] = [_as_list(v) for v in items_df["categories"]]
    users_df = read_table(users, "users") if users else None
    return inter, items_df, users_df


def _as_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        return [c for c in (s.strip() for s in value.split("|")) if c]
    return [str(c) for c in value]


def refuse_repeated_columns(path: Path, sep: str, where: str) -> None:
    """pandas renames a repeated header name (``timestamp`` -> ``timestamp.1``) and the first
    would be used silently: which of the two is meant?"""
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataValidationError(f"{where}: the header names column(s) {', '.join(map(repr, repeated))} more than once")


def _parquet_schema(path: Path, where: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except pa.ArrowInvalid as e:
        raise DataValidationError(f"{where}: not a readable Parquet file ({e})") from e


def read_table(uri: str, what: str) -> pd.DataFrame:
    if is_dataset(uri):  # a folder of (partitioned) Parquet files
        return read_dataset(uri, what)
    path = localize(uri)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if path.stat().st_size == 0:
        raise DataValidationError(f"{what} table {uri}: the file is empty")
    interactions = what == "interactions"
    try:
        if suffix in (".parquet", ".pq"):
            # the schema, before the read: its types are exact (a map is not yet a list of pairs)
            if problem := schema_problem(_parquet_schema(path, f"{what} table {uri}"), interactions):
                raise DataValidationError(f"{what} table {uri}: {problem}")
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".csv.gz", ".txt", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            refuse_repeated_columns(path, sep, f"{what} table {uri}")
            # Only an empty cell is missing: pandas' default NA words ("NA", "null", "None", "nan",
            # ...) are legal ids and titles. Ids are read as text so "007" stays "007".
            df = pd.read_csv(path, sep=sep, dtype={"user_id": str, "item_id": str},
                             keep_default_na=False, na_values=[""])
        else:
            raise DataValidationError(f"{what} table {uri}: unknown format {suffix!r} (use .csv or .parquet)")
    except pd.errors.EmptyDataError as e:
        raise DataValidationError(f"{what} table {uri}: the file is empty") from e
    except pd.errors.ParserError as e:
        raise DataValidationError(f"{what} table {uri}: not valid CSV ({str(e).strip()})") from e
    except UnicodeDecodeError as e:
        raise DataValidationError(f"{what} table {uri}: not UTF-8 text ({e.reason}); "
                                  "save it as UTF-8 CSV") from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataValidationError(f"{what} table {uri}: not a readable gzip file ({e})") from e
    if df.empty:
        raise DataValidationError(f"{what} table {uri}: no rows")
    if suffix not in (".parquet", ".pq") and (problem := frame_problem(df, interactions)):  # "true" read as a bool
        raise DataValidationError(f"{what} table {uri}: {problem}")
    if len(df.columns) == 1:
        only = str(df.columns[0])
        for sep in (";", "\t", "|", " "):
            if sep in only:
                raise DataValidationError(
                    f"{what} table {uri}: one column {only!r}; the file seems to use {sep!r} as delimiter, "
                    "but padirec reads comma-separated CSV"
                )
    return df
