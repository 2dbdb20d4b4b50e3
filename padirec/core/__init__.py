"""The ground floor: primitives every stage may import, importing no stage themselves.

``metrics`` (NDCG@k, HR@k, alpha-NDCG@k), ``tasks`` (task weights on the simplex and their one
validation, the evaluation grid, random tasks), ``layout`` (the flat adapter layout),
``utilities`` (each utility's evaluation metric), ``tracker`` (the ``Tracker`` interface stages
log to) and ``typed_config`` (strict loading of configuration dataclasses).
"""
