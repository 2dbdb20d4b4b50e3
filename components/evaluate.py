from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def evaluate_component(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Input[Dataset],
                       bank: Input[Dataset], generator: Input[Model], band_generator: Input[Model],
                       ceiling: Input[Model], report: Output[Artifact]):
    """The response time of every method on new tasks, then every method x every task of the grid
    -> report.json, report.md, plots."""
    from padirec.commands import steps

    report.metadata.update(steps.evaluate_step(config_json, data.path, backbone.path, features.path, bank.path,
                                               generator.path, band_generator.path, ceiling.path, report.path))


def plan_evaluation_component(config_json: str) -> NamedTuple("EvaluationPlan", [("count", int), ("indices", list)]):
    """``evaluation.shards`` and the shard indices: one shard runs ``evaluate``, more fan out."""
    from typing import NamedTuple

    from padirec.commands import steps

    count, indices = steps.plan_evaluation_step(config_json)
    return NamedTuple("EvaluationPlan", [("count", int), ("indices", list)])(count, indices)


def evaluate_shard_component(config_json: str, shard_index: int, data: Input[Dataset], backbone: Input[Model],
                             features: Input[Dataset], bank: Input[Dataset], generator: Input[Model],
                             band_generator: Input[Model], ceiling: Input[Model], part: Output[Dataset]):
    """One range of the test users: their per-user figures (``padirec.commands.steps.evaluate_shard_step``)."""
    from padirec.commands import steps

    part.metadata.update(steps.evaluate_shard_step(config_json, shard_index, data.path, backbone.path, features.path,
                                                   bank.path, generator.path, band_generator.path, ceiling.path,
                                                   part.path))


def time_responses_component(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Input[Dataset],
                             bank: Input[Dataset], generator: Input[Model], band_generator: Input[Model],
                             ceiling: Input[Model], timings: Output[Dataset]):
    """Beside the user shards: new tasks timed on every user (``padirec.commands.steps.time_responses_step``)."""
    from padirec.commands import steps

    timings.metadata.update(steps.time_responses_step(config_json, data.path, backbone.path, features.path, bank.path,
                                                      generator.path, band_generator.path, ceiling.path,
                                                      timings.path))
