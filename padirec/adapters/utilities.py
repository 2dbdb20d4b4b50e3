"""Every utility by name.

``UTILITIES`` (``padirec.core.utilities``) is filled by importing every module of this package that
defines utilities: each registers itself with ``@register_utility`` (the built-ins are the classes of
``padirec.adapters.objectives``), so a new one is one new file (or a plugin file, named in the
config's ``plugins``). The modules that read the registry import it from here.
"""

from __future__ import annotations

from padirec.core.plugins import import_package
from padirec.core.utilities import UTILITIES, Utility, metric_key, register_utility, utility_metrics

# the modules of this package that define no utility (the losses' helpers, and what reads them)
_NOT_UTILITIES = {"adapter", "bank", "config", "evaluate", "features", "features_stage", "novelty_loss", "pairwise", "stage",
                  "train", "utilities"}
import_package("padirec.adapters", skip=_NOT_UTILITIES)

__all__ = ["UTILITIES", "Utility", "metric_key", "register_utility", "utility_metrics"]
