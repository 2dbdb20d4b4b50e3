from kfp.dsl import Artifact, Dataset, Input, Model, Output


def evaluate(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Input[Dataset],
             bank: Input[Dataset], generator: Input[Model], timing: Input[Artifact],
             report: Output[Artifact]):
    """Every method x every task of the grid (+ the response times) -> report.json, report.md, plots."""
    from padirec import steps

    report.metadata.update(steps.evaluate(config_json, data.path, backbone.path, features.path, bank.path,
                                          generator.path, timing.path, report.path))


def compare_response_time(config_json: str, data: Input[Dataset], backbone: Input[Model], features: Input[Dataset],
                          bank: Input[Dataset], generator: Input[Model], timing: Output[Artifact]):
    """Wall time from new weights to a model serving them, per method."""
    from padirec import steps

    timing.metadata.update(steps.compare_response_time(config_json, data.path, backbone.path, features.path,
                                                       bank.path, generator.path, timing.path))
