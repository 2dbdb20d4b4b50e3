"""Phase 2: the adapter bank.

``adapter`` (the residual adapter and its flat layout), ``features`` (frozen-backbone
representations, computed once), ``objectives`` (accuracy, diversity, fairness losses),
``tasks`` (weights on the simplex), ``train`` (batched training, Retrain), ``evaluate``
(full-ranking metrics of many adapters), ``bank`` (the artifact), ``stage`` (``build_adapters``).
Submodules are imported explicitly (``padirec.config`` imports ``adapters.config`` only).
"""
