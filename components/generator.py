from kfp.dsl import Dataset, Input, Model, Output


def train_generator_component(config_json: str, banks: Input[list[Dataset]],
                              bank: Output[Dataset], generator: Output[Model]):
    """Collect the adapter-bank shards, then phase 3: the DiT generator (``padirec.commands.steps.train_generator_step``)."""
    from padirec.commands import steps

    generator.metadata.update(steps.train_generator_step(config_json, [b.path for b in banks], bank.path, generator.path))
