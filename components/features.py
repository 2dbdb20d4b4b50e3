from kfp.dsl import Dataset, Input, Model, Output


def compute_features_component(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Output[Dataset]):
    """The frozen backbone's features and top-k lists, once per pipeline (``padirec.commands.steps.compute_features_step``)."""
    from padirec.commands import steps

    features.metadata.update(steps.compute_features_step(config_json, data.path, backbone.path, features.path))
