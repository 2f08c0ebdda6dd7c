"""User-facing errors.

Anything the user can fix (a missing file, a bad model name, an asset that cannot be
fetched) raises :class:`PassrtError`. The CLI prints its message as one line and exits
non-zero without a traceback; everything else is a bug and keeps its traceback.
"""


class PassrtError(Exception):
    """An error caused by the user's input or environment, with a message saying what to do."""
