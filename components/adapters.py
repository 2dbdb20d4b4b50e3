from kfp.dsl import Dataset, Input, Model, Output


def plan_shards_component(config_json: str) -> list[int]:
    """The shard indices of the adapter bank, for the pipeline's ParallelFor fan-out."""
    from padirec.commands import steps

    return steps.plan_shards_step(config_json)


def build_adapters_component(config_json: str, shard_index: int, data: Input[Dataset],
                             backbone: Input[Model], features: Input[Dataset], bank: Output[Dataset]):
    """Phase 2: one shard of the adapter bank (``padirec.commands.steps.build_adapters_step``)."""
    from padirec.commands import steps

    bank.metadata.update(steps.build_adapters_step(config_json, shard_index, data.path, backbone.path, features.path,
                                                   bank.path))
