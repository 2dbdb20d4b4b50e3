from kfp.dsl import Artifact, Dataset, Input, Model, Output


def register_and_promote_component(config_json: str, data: Input[Dataset], backbone: Input[Model],
                                   generator: Input[Model], report: Input[Artifact], system: Output[Model]):
    """Bundle backbone + generator, register the system, promote it through the gate."""
    from padirec.commands import steps

    system.metadata.update(steps.register_and_promote_step(config_json, data.path, backbone.path, generator.path,
                                                           report.path, system.path))
