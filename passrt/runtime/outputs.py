"""Every output path is checked before the model loads or the first frame runs.

A run that ends after an hour with "cannot write" has lost the hour; a run whose output is its
own input has destroyed the input. So every path a command will write (video, JSON, tracks,
snapshot directory) is checked up front: its directory exists and is writable (probed by
creating a file, since permission bits say nothing on a read-only mount or for root), it is
not a directory itself, it is not one of the inputs, and no two outputs are the same file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from passrt.errors import PassrtError, redact
from passrt.runtime.image_folder import is_image_folder, list_images

VIDEO_SUFFIXES = (".mp4", ".avi")


def check_outputs(inputs: list[str], files: dict[str, str | None],
                  directories: dict[str, str | None] | None = None) -> None:
    """``files``/``directories``: flag -> path (None: not given). ``inputs``: source URIs or paths;
    those that are local files must not be written over."""
    taken: dict[str, str] = {}
    for flag, path in inputs_as_files(inputs):
        taken[path] = flag
    for flag, path in files.items():
        if path is None:
            continue
        target = Path(path)
        if target.is_dir():
            raise PassrtError(f"{flag} {path} is a directory; give a file name")
        _writable_directory(flag, path, target.parent)
        key = os.path.realpath(target)
        if key in taken:
            what = "the input" if taken[key].startswith("--input") else f"{taken[key]}'s file"
            raise PassrtError(f"{flag} {path} is {what}; writing it would destroy it: choose another file name")
        taken[key] = flag
    for flag, path in (directories or {}).items():
        if path is None:
            continue
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise PassrtError(f"{flag} {path} exists and is not a directory")
        if not target.exists():
            _writable_directory(flag, path, target.parent)
            target.mkdir()
        _writable_directory(flag, path, target)


def check_video_name(flag: str, path: str | None) -> None:
    if path is not None and Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise PassrtError(f"{flag} {path}: use a .mp4 or .avi file name")


def inputs_as_files(inputs: list[str]) -> list[tuple[str, str]]:
    """(flag, real path) of every input that is a local file (a URI, camera or asset name is not)."""
    out = []
    for i, uri in enumerate(inputs):
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://"):]
        flag = "--input" if len(inputs) == 1 else f"--input #{i + 1}"
        if Path(text).is_file():
            out.append((flag, os.path.realpath(text)))
        elif is_image_folder(text):  # an image folder's images are inputs too, each of them
            try:
                out += [(flag, os.path.realpath(f)) for f in list_images(text)]
            except PassrtError:
                pass  # an empty folder: opening the source says so, in its own words
    return out


def _writable_directory(flag: str, path: str, directory: Path) -> None:
    directory = directory if str(directory) else Path(".")
    if not directory.is_dir():
        raise PassrtError(f"cannot write {flag} {redact(path)}: directory {directory} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".passrt-probe-"):
            pass
    except OSError as e:
        raise PassrtError(f"cannot write {flag} {redact(path)}: directory {directory} is not writable "
                          f"({e.strerror})") from None
