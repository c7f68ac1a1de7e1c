"""Errors the user sees: each message names the file or key at fault and what to do about it."""

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """" Did you mean 'x'?" for the known name closest to a mistyped one (difflib's ratio >= 0.6), else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class MatteralignError(Exception):
    """Base class: the CLI prints these as one paragraph, without a traceback."""


class ConfigError(MatteralignError):
    """A models.yaml / task YAML / argument problem."""


class ModelUnavailable(MatteralignError):
    """A model's package or weights are missing here; the run goes on with the other models."""


class OutsideModality(ModelUnavailable):
    """No structure of a task is one the model can read (a protein task for an MLIP): skipped, reported once per
    task. `why` is the per-structure reason ("no protein sequence")."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class DataError(MatteralignError):
    """Input arrays or files that cannot give a correct number (NaN, mismatched ids, too few points)."""
