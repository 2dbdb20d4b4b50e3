"""Parameter diffusion (phase 3): a DiT learns p(adapter parameters | task weights).

``tokenizer`` (normalise + tokenise adapter rows), ``dit`` (the denoiser), ``denoiser`` (what the
DiT predicts, the loss weighting), ``schedulers`` (DDPM, DDIM, DPM-Solver++(2M)), ``sampling``
(classifier-free guidance, the reverse loop), ``generator`` (sampling, storage), ``train`` (its
training, paper Alg. 1), ``stage`` (the ``train_generator`` pipeline step), ``synthetic_bank`` (a
bank with a known answer, for tests and benchmarks).
"""
