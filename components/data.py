from kfp.dsl import Dataset, Output


def prepare_data(config_json: str, kfp_run_id: str, data: Output[Dataset]):
    """Source -> validated leave-one-out split (``padirec.data.stage.run_data_stage``)."""
    from padirec.config import config_from_json
    from padirec.data.stage import run_data_stage
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, kfp_run_id, "prepare_data") as tracker:
        manifest = run_data_stage(cfg.data, data.path, tracker)
    data.metadata.update({k: v for k, v in manifest["stats"].items() if isinstance(v, int | float)})
    data.metadata["data_checksum"] = manifest["data_checksum"]
