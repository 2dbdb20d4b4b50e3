from kfp.dsl import Artifact, Dataset, Input, Model, Output


def register_and_promote(config_json: str, data: Input[Dataset], backbone: Input[Model],
                         generator: Input[Model], report: Input[Artifact], system: Output[Model]):
    """Bundle backbone + generator, register ``padirec-recommender``, promote through the gate."""
    from padirec.config import config_from_json
    from padirec.progress import setup_logging
    from padirec.promotion import register_and_promote_stage
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "register_and_promote") as tracker:
        result = register_and_promote_stage(data.path, backbone.path, generator.path, report.path, system.path,
                                            cfg, tracker)
    system.metadata.update({k: v for k, v in result.items() if isinstance(v, int | float | str | bool)})
