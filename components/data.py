from kfp.dsl import Dataset, Output


def prepare_data(config_json: str, data_version: str, data: Output[Dataset]):
    """Source -> validated leave-one-out split (``padirec.data.stage.run_data_stage``).

    ``data_version`` names the source snapshot; it is here for KFP's cache key (a new version is
    a cache miss) and is recorded on the step's run."""
    from padirec.config import config_from_json
    from padirec.data.stage import run_data_stage
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "prepare_data") as tracker:
        tracker.set_tags({"data_version": data_version or "unversioned"})
        manifest = run_data_stage(cfg.data, data.path, tracker)
    data.metadata.update({k: v for k, v in manifest["stats"].items() if isinstance(v, int | float)})
    data.metadata["data_checksum"] = manifest["data_checksum"]
    data.metadata["data_version"] = data_version
