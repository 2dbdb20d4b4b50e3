"""Thin KFP components: each translates artifacts to paths and calls one function of ``padirec.steps``.

Component functions are plain functions here; ``build(image)`` turns them into KFP components on
the given image (the project image; a compile-time parameter, never ``latest``). Imports live
inside the functions because KFP ships only the function's source to the container.
"""


from kfp import dsl

from components.adapters import build_adapters, plan_shards
from components.backbone import train_backbone
from components.data import prepare_data
from components.evaluate import evaluate
from components.features import compute_features
from components.finish import finish_run
from components.generator import train_generator
from components.register import register_and_promote

FUNCTIONS = {
    "prepare_data": prepare_data,
    "train_backbone": train_backbone,
    "compute_features": compute_features,
    "plan_shards": plan_shards,
    "build_adapters": build_adapters,
    "train_generator": train_generator,
    "evaluate": evaluate,
    "register_and_promote": register_and_promote,
    "finish_run": finish_run,
}


def build(image: str) -> dict:
    """All components on ``image``, by name."""
    return {name: dsl.component(fn, base_image=image, install_kfp_package=False) for name, fn in FUNCTIONS.items()}
