"""The model registry: the trained system as a pyfunc model version (promotion, the gate and
``champion``: ``padirec.tracking.promotion``).

Registration is idempotent per pipeline run: a KFP retry of the registering step reuses the
version that its earlier attempt created (``register_system``). The version is created with every
tag that describes it (``REQUIRED_TAGS``) in one call, so no version exists without them; a version
that lacks one anyway (made by hand, or by an older padirec) is incomplete and never promoted.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from padirec.errors import PadirecError
from padirec.serving import input_example, model_signature

log = logging.getLogger("padirec")
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Servable from the registry alone (a fresh virtualenv, ``mlflow models build-docker``): the model
# carries the padirec package itself as code (``code_paths``; MLflow puts the model's ``code/``
# first on ``sys.path`` when it loads it) and pins only what serving imports, each at the version
# installed here (the image's, from requirements.lock), plus ``constraints.txt`` pinning their
# whole dependency tree the same way. Not a padirec wheel: its dependencies are the pipeline's
# (kfp, Great Expectations, boto3, psycopg, matplotlib, ...), which serving does not need; and not
# ``padirec==0.1.0``: no index has it, so installing the model's requirements could only fail (or
# fetch another project's package of that name).
SERVING_PACKAGES = ("mlflow", "torch", "numpy", "pandas", "pyarrow", "safetensors")
CHECKSUM_TAG = "padirec.system_checksum"
# What registration writes, in the one call that creates the version: a version without them was
# not made by ``register_system`` (or by a broken one) and is never promoted.
REQUIRED_TAGS = ("data_checksum", "evaluation_key", "quality.score", "quality.avg_hv", "quality.pearson_ra",
                 "quality.pearson_rd", CHECKSUM_TAG, "kfp.run_id")


class PromotionError(PadirecError):
    """A promotion that cannot be done; the message names the model, the version or the store."""


def to_float(v: Any) -> float:
    """``v`` as a float; NaN for None, text and anything else that is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def register_system(uri: str, run_id: str, system_dir: str | Path, model_name: str,
                    tags: dict[str, Any], kfp_run_id: str) -> str:
    """Log the system folder as a pyfunc model in ``run_id`` and register it; returns the version.

    Safe under KFP retries: a version made by this pipeline run (tag ``kfp.run_id``) from the
    same files (tag ``padirec.system_checksum``) is reused, so a retried step makes no second
    version. The version is created with all its tags in one call, so no version exists without
    the tags that find it again. (Two attempts running at once could still both create one; KFP
    runs the attempts of a task one after the other.)
    """
    import mlflow
    from mlflow import MlflowClient

    from padirec.tracking.core import redact, safe_user

    given = {**tags, "kfp.run_id": kfp_run_id, CHECKSUM_TAG: "set below"}
    bad = [t for t in REQUIRED_TAGS if t not in given or (t.startswith("quality.") and not math.isfinite(to_float(given[t])))]
    if bad:  # the version would be incomplete: refuse before anything is logged
        raise PromotionError(f"cannot register {model_name!r}: missing or undefined tag(s) {', '.join(bad)}")
    client = MlflowClient(uri)
    _ensure_registered_model(client, model_name)
    checksum = system_checksum(system_dir)
    existing = find_version(client, model_name, kfp_run_id, checksum)
    if existing is not None:
        log.info("%s v%s was registered by an earlier attempt of pipeline run %s: reusing it",
                 model_name, existing, kfp_run_id)
        return existing
    # Model.log with run_id, not pyfunc.log_model inside ``with mlflow.start_run(run_id)``: leaving
    # that block would end the step's run. Model.log reads the global tracking URI.
    import mlflow.pyfunc
    from mlflow.models import Model

    mlflow.set_tracking_uri(uri)
    with tempfile.TemporaryDirectory(prefix="padirec-model-") as tmp:
        info = Model.log(
            artifact_path=None, name="recommender", flavor=mlflow.pyfunc, run_id=run_id,
            tags={"mlflow.user": safe_user()},  # MLflow's default is MLFLOW_TRACKING_USERNAME, a credential
            **_model_kwargs(system_dir, Path(tmp)),
        )
    all_tags = {**{k: redact(v) for k, v in tags.items()}, "kfp.run_id": kfp_run_id, CHECKSUM_TAG: checksum}
    mv = client.create_model_version(model_name, source=info.model_uri, run_id=run_id, tags=all_tags,
                                     model_id=info.model_id, description=serving_note())
    return str(mv.version)


def system_checksum(system_dir: str | Path) -> str:
    """sha256 over every file of the folder (relative name and content): the same files give the
    same checksum wherever and whenever they were written."""
    import hashlib

    from padirec.runtime.artifacts import sha256_file

    root = Path(system_dir)
    lines = [f"{p.relative_to(root).as_posix()}:{sha256_file(p)}" for p in sorted(root.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def find_version(client, model_name: str, kfp_run_id: str, checksum: str) -> str | None:
    """The version that pipeline run ``kfp_run_id`` registered from files with ``checksum``, if any."""
    found = [v for v in client.search_model_versions(f"name = '{model_name}' and tags.`kfp.run_id` = '{kfp_run_id}'")
             if v.tags.get(CHECKSUM_TAG) == checksum]
    return str(min(int(v.version) for v in found)) if found else None


def _ensure_registered_model(client, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as e:  # exists already, or another registration created it just now
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def save_pyfunc(system_dir: str | Path, path: str | Path) -> Path:
    """The same pyfunc model as ``register_system``, saved to a local folder (no registry):
    ``mlflow models serve -m PATH`` serves it."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="padirec-model-") as tmp:
        mlflow.pyfunc.save_model(str(path), **_model_kwargs(system_dir, Path(tmp)))
    return Path(path)


def _model_kwargs(system_dir: str | Path, tmp: Path) -> dict[str, Any]:
    """What ``register_system`` and ``save_pyfunc`` give MLflow: the model code, the system, the
    padirec package (``code_paths``), the pinned requirements and constraints, the signature, a
    real request as the input example, and the serving note as metadata. ``tmp`` holds the copies
    MLflow reads from (it copies them into the model)."""
    code = tmp / "code" / "padirec"
    shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    requirements, constraints = pinned_requirements()
    (tmp / "constraints.txt").write_text("\n".join(constraints) + "\n")
    example = input_example(system_dir)
    if example is None:  # a stand-in folder (tests): nothing to build a request from
        log.warning("%s: no catalogue, or manifests without utilities and max_len: the model is logged "
                    "without an input example", system_dir)
    return dict(
        python_model=str(PYFUNC_CODE),  # from code: no pickle on the load path
        artifacts={"system": str(system_dir)},
        code_paths=[str(code)],
        pip_requirements=[*requirements, f"-c {tmp / 'constraints.txt'}"],
        signature=model_signature(),  # names the request's fields and lets params={"k": ...} through
        input_example=example,
        metadata={"padirec_version": _padirec_version(), "serving": serving_note()},
    )


def pinned_requirements() -> tuple[list[str], list[str]]:
    """``(requirements, constraints)``: ``SERVING_PACKAGES`` pinned at their installed versions,
    and every package they need (transitively, extras left out, for this platform) likewise.

    Versions are public (``torch==2.13.0``, not ``2.13.0+cpu``), so either torch build satisfies
    them: which one pip installs is the index's choice (``serving_note``)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    versions: dict[str, str] = {}
    todo = list(SERVING_PACKAGES)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in versions:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # not needed here (another platform's dependency)
            continue
        versions[name] = Version(dist.version).public
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    missing = [p for p in SERVING_PACKAGES if canonicalize_name(p) not in versions]
    if missing:
        raise PromotionError(f"cannot log the model: {', '.join(missing)} not installed")
    requirements = [f"{p}=={versions[canonicalize_name(p)]}" for p in SERVING_PACKAGES]
    return requirements, [f"{n}=={v}" for n, v in sorted(versions.items())]


def serving_note() -> str:
    """How to rebuild the serving environment, with the torch build this model was logged with:
    the model version's description and ``metadata.serving`` in its MLmodel."""
    import torch
    from packaging.version import Version

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    pin = f"torch=={Version(torch.__version__).public}"
    return (f"padirec {_padirec_version()} recommender, served on CPU. Logged with torch {torch.__version__} "
            f"({build} build). The model holds the padirec code (code/), requirements.txt (mlflow, torch, "
            "numpy, pandas, pyarrow, safetensors, pinned) and constraints.txt (their whole dependency tree, "
            "pinned), so the serving environment can be rebuilt from the registry alone (a virtualenv, "
            "`mlflow models serve --env-manager uv`, `mlflow models build-docker`: docs/serving.md). "
            f"{pin} is met by whichever build the index offers: PyPI's "
            "Linux wheel is the CUDA build (it pulls the nvidia-* packages, several GB); serving needs only "
            "the CPU build: add --extra-index-url https://download.pytorch.org/whl/cpu (PIP_EXTRA_INDEX_URL) "
            "or a local wheel (--find-links) to install that one.")


def _padirec_version() -> str:
    from padirec import __version__

    return __version__
