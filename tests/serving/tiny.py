"""A tiny trained system folder (synthetic data, a few seconds of training) for the serving tests,
and the pyfunc model saved from it with the serving signature."""

from __future__ import annotations

from pathlib import Path

MAX_LEN = 8


def build_tiny_system(prepared: Path, root: Path, inference_steps: int = 5) -> Path:
    from padirec.adapters.config import AdapterConfig
    from padirec.adapters.stage import build_adapters_stage
    from padirec.backbones.config import BackboneConfig
    from padirec.backbones.stage import train_backbone_stage
    from padirec.diffusion.config import GeneratorConfig
    from padirec.diffusion.stage import train_generator_stage
    from padirec.serving import build_system
    from padirec.tracking import NullTracker

    train_backbone_stage(prepared, root / "backbone", BackboneConfig(epochs=2, patience=1), MAX_LEN, 0, "cpu")
    build_adapters_stage(prepared, root / "backbone", root / "bank",
                         AdapterConfig(num_random_tasks=4, checkpoints_per_task=1, epochs=2, steps_per_epoch=2),
                         MAX_LEN, 0, "cpu", NullTracker())
    train_generator_stage(root / "bank", root / "generator",
                          GeneratorConfig(train_steps=20, num_train_timesteps=50, num_inference_steps=inference_steps),
                          0, "cpu")
    build_system(prepared, root / "backbone", root / "generator", root / "system")
    return root / "system"


def save_model(system: Path, path: Path, signature: bool = True) -> Path:
    """The pyfunc model as ``padirec.tracking.model_registry`` logs it (``save_pyfunc``: signature, input
    example, code and requirements); ``signature=False``: the bare model, without the signature."""
    import mlflow

    from padirec.tracking.model_registry import PYFUNC_CODE, save_pyfunc

    if signature:
        return save_pyfunc(system, path)
    mlflow.pyfunc.save_model(str(path), python_model=str(PYFUNC_CODE), artifacts={"system": str(system)})
    return path


_BUILT: dict[str, Path] = {}


def tiny_system(prepared: Path, tmp_path_factory) -> Path:
    """One tiny system per test session (tests only read it): training it takes ~30 s here."""
    key = str(prepared)
    if key not in _BUILT:
        _BUILT[key] = build_tiny_system(prepared, tmp_path_factory.mktemp("system"))
    return _BUILT[key]
