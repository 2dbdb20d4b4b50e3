"""The compared methods behind one interface (``base.Method``): PaDiRec, Retrain, Soup, MMR, CMR,
Hypernetwork, DeepPRL. ``registry.build_methods`` builds them by key."""
