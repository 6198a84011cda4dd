"""Exceptions for input the user can fix.

Every message names the file, key or value at fault and states what to do. The CLI prints
these without a traceback; anything else escaping is a bug in the workbench.
"""


class WorkbenchError(Exception):
    """Base class for errors caused by user input (data, config, checkpoints)."""


class ConfigError(WorkbenchError):
    """An unknown config key, an invalid value or an unusable config file."""


class DataError(WorkbenchError):
    """An audio or label file, or a dataset folder, that cannot be used."""


class CheckpointError(WorkbenchError):
    """A checkpoint file that is missing, unreadable or made for another model shape."""
