from kfp import dsl


def finish_run(config_json: str, status: dsl.PipelineTaskFinalStatus):
    """Exit handler: close the pipeline's parent MLflow run as FINISHED or FAILED, and mark FAILED
    any step run that a killed step left RUNNING."""
    from padirec.config import config_from_json
    from padirec.tracking import finish_pipeline_run

    run_id = finish_pipeline_run(config_from_json(config_json), status.state)
    print(f"pipeline {status.state}; MLflow parent run {run_id}")
