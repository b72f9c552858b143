"""Errors raised on bad input, before any compute starts."""


class AutoMLError(Exception):
    """Base class: the CLI prints these without a traceback and exits non-zero."""


class ConfigError(AutoMLError):
    """A study file or search space file is invalid."""


class DataError(AutoMLError):
    """The dataset folder is invalid; the message lists every offending file."""


class StorageError(AutoMLError):
    """The study's storage (or a run folder) could not be written: what, where, and free space."""
