from kfp.dsl import Dataset, Input, Model, Output


def train_generator(config_json: str, banks: Input[list[Dataset]],
                    bank: Output[Dataset], generator: Output[Model]):
    """Collect the adapter-bank shards, then phase 3: the DiT generator (``padirec.diffusion``)."""
    import dataclasses

    from padirec.adapters.stage import merge_adapter_banks
    from padirec.cache import cache_key, run_cached
    from padirec.config import config_from_json
    from padirec.diffusion.stage import train_generator_stage
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "train_generator") as tracker:
        merge_adapter_banks([b.path for b in banks], bank.path)
        key = cache_key("train_generator", [dataclasses.asdict(cfg.generator), cfg.seed], [bank.path])
        summary = run_cached(cfg.cache_root(), "train_generator", key, generator.path, lambda: train_generator_stage(
            bank.path, generator.path, cfg.generator, cfg.seed, cfg.device, tracker))
    generator.metadata.update({k: v for k, v in summary.items() if isinstance(v, int | float | str)})
