"""Thin KFP components: each translates artifacts to paths and calls one function of ``padirec.commands.steps``.

Component functions are plain functions here; ``build(image)`` turns them into KFP components on
the given image (the project image; a compile-time parameter, never ``latest``). Imports live
inside the functions because KFP ships only the function's source to the container.
"""


from kfp import dsl

from components.adapters import build_adapters_component, plan_shards_component
from components.backbone import train_backbone_component
from components.ceiling import retrain_ceiling_component
from components.data import prepare_data_component
from components.evaluate import (
    evaluate_component,
    evaluate_shard_component,
    plan_evaluation_component,
    time_responses_component,
)
from components.features import compute_features_component
from components.finish import finish_run_component
from components.generator import band_generator_component, train_generator_component
from components.merge_evaluation import merge_evaluation_component
from components.register import register_and_promote_component

FUNCTIONS = {  # the step's name (its KFP task: ``train_backbone`` -> ``train-backbone``) -> its component
    "prepare_data": prepare_data_component,
    "train_backbone": train_backbone_component,
    "compute_features": compute_features_component,
    "plan_shards": plan_shards_component,
    "build_adapters": build_adapters_component,
    "train_generator": train_generator_component,
    "band_generator": band_generator_component,
    "retrain_ceiling": retrain_ceiling_component,
    "plan_evaluation": plan_evaluation_component,
    "evaluate": evaluate_component,
    "evaluate_shard": evaluate_shard_component,
    "time_responses": time_responses_component,
    "merge_evaluation": merge_evaluation_component,
    "register_and_promote": register_and_promote_component,
    "finish_run": finish_run_component,
}


def build(image: str) -> dict:
    """All components on ``image``, by step name."""
    return {name: _named(dsl.component(fn, base_image=image, install_kfp_package=False), name)
            for name, fn in FUNCTIONS.items()}


def _named(component, name: str):
    """KFP names a component after its function: named after its step instead, the task names (and
    the run folders, caches and metrics that use them) stay the step's."""
    component.name = component.component_spec.name = name.replace("_", "-")
    return component
