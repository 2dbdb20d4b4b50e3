from kfp.dsl import Artifact, Dataset, Input, Model, Output


def evaluate_component(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Input[Dataset],
                       bank: Input[Dataset], generator: Input[Model], band_generator: Input[Model],
                       ceiling: Input[Model], report: Output[Artifact]):
    """The response time of every method on new tasks, then every method x every task of the grid
    -> report.json, report.md, plots."""
    from padirec.commands import steps

    report.metadata.update(steps.evaluate_step(config_json, data.path, backbone.path, features.path, bank.path,
                                               generator.path, band_generator.path, ceiling.path, report.path))
