from kfp import dsl


def finish_run_component(config_json: str, status: dsl.PipelineTaskFinalStatus):
    """Exit handler: close the pipeline's parent MLflow run as FINISHED or FAILED, and mark FAILED
    any step run that a killed step left RUNNING."""
    from padirec.commands import steps

    run_id = steps.finish_run_step(config_json, status.state)
    print(f"pipeline {status.state}; MLflow parent run {run_id}")
