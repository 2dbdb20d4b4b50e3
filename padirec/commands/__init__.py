"""Where work enters the library: the ``padirec`` commands (``cli``; ``recommend``: one user's
top-k) and the pipeline's steps as plain functions (``steps``: what each KFP component calls)."""
