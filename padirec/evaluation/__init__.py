"""Evaluation: the method x task sweep (``sweep``), its summary (``summary``: Avg.HV, front HV,
Pearson, Spearman), the response-time comparison (``response_time``), analyses (``analyses``),
the versioned report (``report``, ``markdown``, ``plots``) and the two pipeline stages
(``stage``). The ranking metrics are ``padirec.core.metrics``."""
