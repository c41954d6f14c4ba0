"""The one exception a user's mistake raises: the CLI prints its message on one line and exits non-zero."""


class EdgerecError(Exception):
    """A problem the user can fix (a bad file, key or value); the message names it and what is valid."""
