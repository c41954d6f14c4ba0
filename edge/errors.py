"""The one error type a user can cause; the CLI prints it as `edgerec: error: ...` without a traceback."""


class EdgerecError(Exception):
    """A problem the user can fix: the message names the file/key/value and what would be valid."""
