from kfp.dsl import Dataset, Input, Model, Output


def retrain_ceiling_component(config_json: str, data: Input[Dataset], backbone: Input[Model],
                              features: Input[Dataset], ceiling: Output[Model]):
    """The Retrain ceiling's second Retrain of every grid task (``padirec.commands.steps.retrain_ceiling_step``)."""
    from padirec.commands import steps

    ceiling.metadata.update(steps.retrain_ceiling_step(config_json, data.path, backbone.path, features.path,
                                                       ceiling.path))
