from kfp.dsl import Dataset, Output


def prepare_data_component(config_json: str, data_version: str, data: Output[Dataset]):
    """Source -> validated leave-one-out split (``padirec.commands.steps.prepare_data_step``). ``data_version``
    names the source snapshot: a new one is a miss in KFP's cache."""
    from padirec.commands import steps

    data.metadata.update(steps.prepare_data_step(config_json, data_version, data.path))
