"""MovieLens-1M-format files at a chosen size, for scale benchmarks (the real files cannot be
downloaded here). ``scale=1`` matches ML-1M's shape: 6,040 users, 3,706 items, 1,000,209 ratings.

Properties that make the cost and the learning realistic:
- item popularity is Zipf-like (exponent ``zipf``), so a few items dominate, as in ML-1M;
- user lengths are log-normal around a median of 95, clipped to [20, 2,314] (ML-1M's range), then
  scaled to the exact total: a heavy tail of users who have seen a large share of the catalogue;
- timestamps come in sessions: ``tie_rate`` of consecutive ratings share their timestamp;
- a learnable sequential signal: items sit on a ring of genre clusters, and a user walks the ring,
  so the next item is mostly near the previous one (a shuffled ``noise`` share breaks the walk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ML1M = {"users": 6040, "items": 3706, "ratings": 1_000_209}
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
MIN_LEN, MAX_LEN, MEDIAN_LEN = 20, 2314, 95  # ML-1M's per-user counts
FIRST_TS, LAST_TS = 956_703_932, 1_046_454_590  # ML-1M's time range (seconds)


def user_lengths(num_users: int, total: int, max_len: int, rng: np.random.Generator) -> np.ndarray:
    """Log-normal lengths with ML-1M's median, clipped, then adjusted to sum to ``total``."""
    mean = total / num_users
    sigma = np.sqrt(2 * np.log(max(mean / MEDIAN_LEN, 1.0 + 1e-9)))  # lognormal mean = median * exp(s^2/2)
    lengths = np.clip(np.round(MEDIAN_LEN * np.exp(sigma * rng.standard_normal(num_users))), MIN_LEN, max_len)
    lengths = lengths.astype(np.int64)
    for _ in range(100):  # spread the difference over the users that still have room
        gap = total - int(lengths.sum())
        if gap == 0:
            break
        room = lengths < max_len if gap > 0 else lengths > MIN_LEN
        idx = rng.choice(np.flatnonzero(room), size=min(abs(gap), int(room.sum())), replace=False)
        lengths[idx] += np.sign(gap)
    return lengths


def generate(scale: float = 1.0, zipf: float = 1.0, tie_rate: float = 0.4, noise: float = 0.2, seed: int = 0):
    """Returns ``(ratings, movies, users)`` as arrays/lists ready to write; see ``write``."""
    rng = np.random.default_rng(seed)
    num_users = int(round(ML1M["users"] * scale))
    num_items = int(round(ML1M["items"] * scale))
    total = int(round(ML1M["ratings"] * scale))
    lengths = user_lengths(num_users, total, min(MAX_LEN, num_items), rng)
    popularity = 1.0 / np.arange(1, num_items + 1) ** zipf
    popularity = popularity[rng.permutation(num_items)]  # popular items are spread over the ring
    popularity /= popularity.sum()

    users, items, stamps = [], [], []
    for u, n in enumerate(lengths):
        chosen = rng.choice(num_items, size=int(n), replace=False, p=popularity)
        start = rng.integers(num_items)
        order = np.argsort((chosen - start) % num_items)  # walk the ring from a random point
        seq = chosen[order]
        mixed = rng.random(len(seq)) < noise
        seq[mixed] = rng.permutation(seq[mixed])
        gaps = np.where(rng.random(len(seq)) < tie_rate, 0, rng.exponential(600.0, len(seq)).astype(np.int64) + 1)
        t0 = rng.integers(FIRST_TS, LAST_TS - int(gaps.sum()) - 1)
        users.append(np.full(len(seq), u + 1))
        items.append(seq + 1)
        stamps.append(t0 + np.cumsum(gaps) - gaps[0])
    ratings = (np.concatenate(users), np.concatenate(items), rng.integers(1, 6, total), np.concatenate(stamps))
    cluster = (np.arange(num_items) * len(GENRES)) // num_items  # genre clusters along the ring
    movies = []
    for i in range(num_items):
        extra = rng.choice(len(GENRES), size=int(rng.integers(0, 3)), replace=False)
        names = sorted({GENRES[cluster[i]], *(GENRES[g] for g in extra)})
        movies.append((i + 1, f"Movie {i + 1} ({1919 + i % 82})", "|".join(names)))
    genders = np.where(rng.random(num_users) < 0.72, "M", "F")  # ML-1M is 72% male
    ages = rng.choice([1, 18, 25, 35, 45, 50, 56], size=num_users)
    return ratings, movies, (np.arange(1, num_users + 1), genders, ages, rng.integers(0, 21, num_users))


def write(folder: str | Path, scale: float = 1.0, seed: int = 0, **kwargs) -> dict[str, int]:
    """Write ``ratings.dat``, ``movies.dat`` and ``users.dat`` (``::``-separated, latin-1) to
    ``folder``; returns the counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (u, i, r, t), movies, (uid, gender, age, occ) = generate(scale, seed=seed, **kwargs)
    _write(folder / "ratings.dat", (f"{a}::{b}::{c}::{d}" for a, b, c, d in zip(u, i, r, t, strict=True)))
    _write(folder / "movies.dat", (f"{m}::{title}::{genres}" for m, title, genres in movies))
    _write(folder / "users.dat", (f"{a}::{g}::{b}::{o}::{10000 + a}" for a, g, b, o in zip(uid, gender, age, occ,
                                                                                         strict=True)))
    return {"users": len(uid), "items": len(movies), "ratings": len(u)}


def _write(path: Path, lines) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="latin-1")
    tmp.replace(path)  # never a half-written file under the final name
