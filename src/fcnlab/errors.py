"""Exceptions meant for the user: one line saying what was wrong and what was expected."""


class FcnlabError(Exception):
    """A user-facing error: one line that says what was wrong and what was expected."""


class DataError(FcnlabError, ValueError):
    """Bad data on disk or in a batch (missing file, wrong label format, out-of-range label...)."""


class ConfigError(FcnlabError, ValueError):
    """A configuration value of the wrong type or out of range."""
