"""The PaDiRec pipeline: data -> backbone -> adapter bank (fan-out) -> generator -> evaluation.

``build_pipeline(image)`` returns the pipeline with every component on ``image``; the whole config
travels as one JSON parameter so each step is hermetic and cached by its content. The exit handler
closes the parent MLflow run whatever happens.
"""


from kfp import dsl

import components

PIPELINE_NAME = "padirec"
DEFAULT_IMAGE = "padirec:0.1.0"


def build_pipeline(image: str = DEFAULT_IMAGE):
    c = components.build(image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Controllable multi-objective recommendation by parameter diffusion")
    def padirec_pipeline(config_json: str):
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        with dsl.ExitHandler(c["finish_run"](config_json=config_json, kfp_run_id=run_id), name="tracked-run"):
            data = c["prepare_data"](config_json=config_json, kfp_run_id=run_id).set_display_name("prepare data")
            backbone = c["train_backbone"](config_json=config_json, kfp_run_id=run_id,
                                           data=data.outputs["data"]).set_display_name("train backbone")
            shards = c["plan_shards"](config_json=config_json)
            with dsl.ParallelFor(shards.output, name="adapter-shards") as shard_index:
                shard = c["build_adapters"](config_json=config_json, kfp_run_id=run_id, shard_index=shard_index,
                                            data=data.outputs["data"], backbone=backbone.outputs["backbone"])
                shard.set_display_name("build adapters")
            generator = c["train_generator"](config_json=config_json, kfp_run_id=run_id,
                                             banks=dsl.Collected(shard.outputs["bank"]))
            generator.set_display_name("train generator")
            inputs = dict(config_json=config_json, kfp_run_id=run_id, data=data.outputs["data"],
                          backbone=backbone.outputs["backbone"], bank=generator.outputs["bank"],
                          generator=generator.outputs["generator"])
            timing = c["compare_response_time"](**inputs).set_display_name("compare response time")
            c["evaluate"](**inputs, timing=timing.outputs["timing"]).set_display_name("evaluate")

    return padirec_pipeline
