"""Errors users see. Each names what is wrong so the fix is obvious from the message."""


class PadirecError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(PadirecError):
    """A configuration file or value is invalid."""


class DataValidationError(PadirecError):
    """An input table failed validation (the message names the expectation, column and rows)."""


class ArtifactError(PadirecError):
    """An artifact is missing, tampered with, or of an incompatible schema version."""


class TaskWeightsError(PadirecError):
    """Preference weights are not a valid point of the simplex."""
