"""The controllable methods, one file each, behind one interface (``base.Method``): PaDiRec,
Retrain, Soup, MMR, CMR, Hypernetwork, DeepPRL. ``registry.METHODS`` holds them by key and
``registry.build_methods`` builds the ones a config asks for."""
