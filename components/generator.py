from kfp.dsl import Dataset, Input, Model, Output


def train_generator_component(config_json: str, banks: Input[list[Dataset]],
                              bank: Output[Dataset], generator: Output[Model]):
    """Collect the adapter-bank shards, then phase 3: the DiT generator (``padirec.commands.steps.train_generator_step``)."""
    from padirec.commands import steps

    generator.metadata.update(steps.train_generator_step(config_json, [b.path for b in banks], bank.path, generator.path))


def band_generator_component(config_json: str, bank: Input[Dataset], band_generator: Output[Model]):
    """The band protocol's generator, on the bank without the band's tasks (``padirec.commands.steps.band_generator_step``)."""
    from padirec.commands import steps

    band_generator.metadata.update(steps.band_generator_step(config_json, bank.path, band_generator.path))
