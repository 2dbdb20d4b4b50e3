from kfp.dsl import Artifact, Dataset, Input, Output


def merge_evaluation_component(config_json: str, parts: Input[list[Dataset]], timings: Input[Dataset],
                               report: Output[Artifact]):
    """The evaluation shards' users and the timings joined -> the report ``evaluate`` writes
    (``padirec.commands.steps.merge_evaluation_step``)."""
    from padirec.commands import steps

    report.metadata.update(steps.merge_evaluation_step(config_json, [p.path for p in parts], timings.path,
                                                       report.path))
