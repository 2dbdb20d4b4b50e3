from kfp.dsl import Dataset, Input, Model, Output


def train_backbone(config_json: str, data: Input[Dataset], backbone: Output[Model]):
    """Phase 1: the sequential backbone trained with BCE (``padirec.backbones.stage``)."""
    import dataclasses

    from padirec.backbones.stage import train_backbone_stage
    from padirec.cache import cache_key, run_cached
    from padirec.config import config_from_json
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "train_backbone") as tracker:
        key = cache_key("train_backbone", [dataclasses.asdict(cfg.backbone), cfg.data.max_len, cfg.seed], [data.path])
        metrics = run_cached(cfg.cache_root(), "train_backbone", key, backbone.path, lambda: train_backbone_stage(
            data.path, backbone.path, cfg.backbone, cfg.data.max_len, cfg.seed, cfg.device, tracker))
    backbone.metadata.update({"model": cfg.backbone.model, "cache": metrics.get("cache", "off"),
                              **{f"test_{k}": v for k, v in metrics["test"].items()}})
