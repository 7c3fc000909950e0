"""Errors about the user's input: the CLI prints their message alone, without a traceback."""


class GeomvolError(Exception):
    """Bad input, named in the message (a config key, a file path)."""


class ConfigError(GeomvolError, ValueError):
    """An invalid pipeline configuration; the message names the key."""


class CheckpointError(GeomvolError, ValueError):
    """A checkpoint that is missing, truncated, or not a geomvol checkpoint; the message names its path."""


class DataError(GeomvolError, ValueError):
    """A prepared data set that is missing or unreadable; the message names its path and how to make it."""
