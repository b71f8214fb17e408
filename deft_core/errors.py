"""Exceptions for mistakes a user can fix: bad input files, unknown options, missing models."""


class DeftError(Exception):
    """A user-facing error. The CLI prints its message as one line and exits non-zero."""


class DataError(DeftError):
    """A dataset that cannot be read. The message names the file, line or field."""
