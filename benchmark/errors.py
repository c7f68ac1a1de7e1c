"""Errors the user sees: each message names the file or key at fault and what to do about it."""


class MatteralignError(Exception):
    """Base class: the CLI prints these as one paragraph, without a traceback."""


class ConfigError(MatteralignError):
    """A models.yaml / task YAML / argument problem."""


class ModelUnavailable(MatteralignError):
    """A model's package or weights are missing here; the run goes on with the other models."""


class DataError(MatteralignError):
    """Input arrays or files that cannot give a correct number (NaN, mismatched ids, too few points)."""
