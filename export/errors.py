"""The build's error tree. Each error is something the person running the build can fix, and
its message says what was found and what to change; `edgeperso` prints it without a
traceback. Anything else the build raises is a bug in it, and shows as one.

    ExportError
    ├── InputError        a file that cannot be read, or lacks what the build needs
    ├── ConfigError       a config or rules file that is not valid
    ├── DataQualityError  too much of the input is unusable to trust a model built from it
    └── CannotTrainError  the data leaves a model nothing to learn from; the message names
                          the data that caused it and the setting that would fix it
"""

from __future__ import annotations

__all__ = ["CannotTrainError", "ConfigError", "DataQualityError", "ExportError", "InputError"]


class ExportError(Exception):
    """Base of every error the build raises on purpose."""


class InputError(ExportError):
    """An input file that cannot be read, or that lacks what the build needs from it."""


class ConfigError(ExportError):
    """A build config or rules file that does not decode, or whose parts contradict each other."""


class DataQualityError(ExportError):
    """Too much of the input was unusable to trust a model built from the rest."""


class CannotTrainError(ExportError):
    """The data leaves a model nothing to learn from (an empty split, no positive example)."""
