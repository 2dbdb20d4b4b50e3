"""Undefined figures: NaN and inf never leave padirec as numbers.

KFP's metadata is a protobuf Struct, which cannot hold NaN or inf ("Fail to serialize NaN"), JSON
has neither, and a NaN in a model version's tags reads as a figure. Where a figure is undefined it
becomes ``None`` (null) and the reason travels with it: ``undefined_reasons`` says why a correlation
is undefined, ``finite_metadata`` cleans what a step writes to KFP's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

UNDEFINED_KEY = "undefined"


def finite(value: Any) -> float | None:
    """``value`` as a finite float, else None (NaN, inf, None, text)."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def why_not_finite(value: Any) -> str:
    number = value if isinstance(value, float) else None
    if number is not None and math.isinf(number):
        return "infinite"
    return "undefined (NaN)"


def finite_metadata(values: Mapping[str, Any], reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``values`` fit for KFP metadata (and JSON): NaN and inf become None, and the key
    ``undefined`` lists each such figure with its reason (``reasons[key]`` where given).
    Strings, booleans, ints and finite floats pass unchanged; nested mappings are cleaned too."""
    out: dict[str, Any] = {}
    why: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out[key] = finite_metadata(value)
        elif isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            why[key] = (reasons or {}).get(key) or why_not_finite(value)
        else:
            out[key] = value
    if why:
        out[UNDEFINED_KEY] = "; ".join(f"{k}: {v}" for k, v in why.items())
    return out


def correlation_reason(x: Sequence[float], y: Sequence[float] | None, x_name: str, y_name: str) -> str:
    """Why the correlation of the series ``x`` and ``y`` over the tasks is undefined ("" when it is
    defined): the policy of ``padirec.evaluation.summary`` in words."""
    if y is None:
        return f"no {y_name} in the sweep to correlate with"
    pairs = [(a, b) for a, b in zip(x, y, strict=False) if finite(a) is not None and finite(b) is not None]
    if len(pairs) < 2:
        return f"fewer than 2 tasks where {x_name} and {y_name} are both defined"
    for name, series in ((x_name, [a for a, _ in pairs]), (y_name, [b for _, b in pairs])):
        if max(series) == min(series):
            return f"{name} is the same ({series[0]:.4g}) on every task: a correlation with it is undefined"
    return ""


def undefined_reasons(figures: Mapping[str, Any], why: Mapping[str, str]) -> dict[str, str]:
    """``{figure: reason}`` for every figure of ``figures`` that is not finite; the reason is
    ``why[figure]`` or, for a hypervolume, that no task has a defined point."""
    out = {}
    for key, value in figures.items():
        if isinstance(value, int | float) and finite(value) is None:
            out[key] = why.get(key) or ("no task has a defined point" if key.endswith("hv") else why_not_finite(value))
    return out
