"""Parameter diffusion (phase 3): a DiT learns p(adapter parameters | task weights).

``tokenizer`` (normalise + tokenise adapter rows), ``dit`` (the denoiser), ``denoiser`` (what the
DiT predicts, the loss weighting), ``schedulers`` (DDPM, DDIM), ``sampling`` (classifier-free
guidance, the reverse loop), ``generator`` (training, sampling, storage), ``stage`` (the
``train_generator`` pipeline step). Import those modules directly: ``padirec.config`` imports
this package for ``GeneratorConfig``, so it stays import-free.
"""
