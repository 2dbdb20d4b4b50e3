"""Phase 2: the adapter bank.

``adapter`` (the residual adapter; its flat layout is ``padirec.core.layout``), ``features``
(frozen-backbone representations, computed once), ``objectives`` (accuracy, diversity, fairness
losses), ``train`` (batched training, Retrain), ``evaluate`` (full-ranking metrics of many
adapters), ``bank`` (the artifact: the one ``AdapterBank`` and its reader), ``stage``
(``build_adapters``). Task weights and their validation are ``padirec.core.tasks``.
"""
