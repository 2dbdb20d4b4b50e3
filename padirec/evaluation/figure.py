"""What every figure of the report shares: matplotlib on the Agg backend (no display needed), and
an atomic PNG write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from padirec.runtime.artifacts import atomic_write  # noqa: E402

__all__ = ["plt", "save", "value"]


def save(fig: Any, path: Path) -> str:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path.name


def value(v: Any) -> float:
    return float("nan") if v is None else float(v)
