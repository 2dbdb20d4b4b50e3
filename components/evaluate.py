from kfp.dsl import Artifact, Dataset, Input, Model, Output


def evaluate(config_json: str, data: Input[Dataset], backbone: Input[Model],
             bank: Input[Dataset], generator: Input[Model], timing: Input[Artifact],
             report: Output[Artifact]):
    """Every method x every task of the grid (+ the response times) -> report.json, report.md, plots."""
    from padirec.config import config_from_json
    from padirec.evaluation.stage import evaluate_stage
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "evaluate") as tracker:
        evaluate_stage(data.path, backbone.path, bank.path, generator.path, timing.path, report.path, cfg, tracker)


def compare_response_time(config_json: str, data: Input[Dataset], backbone: Input[Model],
                          bank: Input[Dataset], generator: Input[Model], timing: Output[Artifact]):
    """Wall time from new weights to a model serving them, per method."""
    from padirec.config import config_from_json
    from padirec.evaluation.stage import response_time_stage
    from padirec.progress import setup_logging
    from padirec.tracking import step_tracker

    setup_logging()
    cfg = config_from_json(config_json)
    with step_tracker(cfg, "compare_response_time") as tracker:
        response_time_stage(data.path, backbone.path, bank.path, generator.path, timing.path, cfg, tracker)
