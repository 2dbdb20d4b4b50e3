from kfp.dsl import Dataset, Input, Model, Output


def plan_shards(config_json: str) -> list[int]:
    """The shard indices of the adapter bank, for the pipeline's ParallelFor fan-out."""
    from padirec.config import config_from_json

    return list(range(config_from_json(config_json).adapters.num_shards))

def build_adapters(config_json: str, shard_index: int, data: Input[Dataset],
                   backbone: Input[Model], bank: Output[Dataset]):
    """Phase 2: one shard of the adapter bank (``padirec.adapters.stage``)."""
    import dataclasses

    from padirec.adapters.stage import build_adapters_stage
    from padirec.cache import cache_key, run_cached
    from padirec.config import config_from_json
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, f"build_adapters_{shard_index}") as tracker:
        settings = [dataclasses.asdict(cfg.adapters), cfg.data.max_len, cfg.seed, shard_index]
        key = cache_key("build_adapters", settings, [data.path, backbone.path])
        summary = run_cached(cfg.cache_root(), "build_adapters", key, bank.path, lambda: build_adapters_stage(
            data.path, backbone.path, bank.path, cfg.adapters, cfg.data.max_len, cfg.seed, cfg.device, tracker,
            shard_index=shard_index, num_shards=cfg.adapters.num_shards))
    bank.metadata.update({k: v for k, v in summary.items() if isinstance(v, int | float | str)})
