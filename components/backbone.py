from kfp.dsl import Dataset, Input, Model, Output


def train_backbone_component(config_json: str, data: Input[Dataset], backbone: Output[Model]):
    """Phase 1: the sequential backbone trained with BCE (``padirec.commands.steps.train_backbone_step``)."""
    from padirec.commands import steps

    backbone.metadata.update(steps.train_backbone_step(config_json, data.path, backbone.path))
