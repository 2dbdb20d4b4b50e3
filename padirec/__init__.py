"""PaDiRec: controllable multi-objective recommendation by parameter diffusion."""

__version__ = "0.1.0"
