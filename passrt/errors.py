"""User-facing errors, and the one rule for printing a source: never its credentials.

Anything the user can fix (a missing file, a bad model name, an asset that cannot be
fetched) raises :class:`PassrtError`. The CLI prints its message as one line and exits
non-zero without a traceback; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re


class PassrtError(Exception):
    """An error caused by the user's input or environment, with a message saying what to do."""


# scheme://user:password@host or scheme://token@host: everything between '//' and the last '@'
# before the host's path. Cameras put passwords in the URI (rtsp://admin:pw@cam/stream).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it masked: rtsp://user:pw@host -> rtsp://***@host.

    Used on every source passrt prints or writes (status, errors, JSON, window titles). The user
    name goes too: on many cameras it is half the secret (admin) and there is no need to show it.
    """
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", str(text))
