"""Options as data: a dataclass field that also says how it appears on the command line.

    @dataclass
    class TrainOptions:
        steps: int = option(300, "training steps, one frame pair each")

:func:`passrt.cli.args.add_options` turns every field made by :func:`option` into a ``--flag``
(named after the field, typed by its default, its help ending with the default) and
:func:`passrt.cli.args.options_from` reads them back, so no option is typed twice. Torch-free,
so ``passrt --help`` stays light.
"""

from __future__ import annotations

from dataclasses import MISSING, field

from passrt.errors import PassrtError


def option(default=MISSING, help: str = "", *, factory=None, **argparse_kwargs):
    """A dataclass field that is also a CLI option; ``argparse_kwargs`` go to ``add_argument``
    (``flags`` for extra spellings such as ``-o``, ``type``, ``choices``, ``nargs``, ``metavar``...)."""
    metadata = {"help": help, **argparse_kwargs}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_size(text: str) -> tuple[int, int]:
    """'576x768' -> (576, 768): a frame size, height x width."""
    h, sep, w = str(text).lower().partition("x")
    try:
        size = (int(h), int(w))
    except ValueError:
        size = None
    if not sep or size is None or min(size) <= 0:
        raise PassrtError(f"--input-size must be HEIGHTxWIDTH, e.g. 576x768; got '{text}'")
    return size


def comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']."""
    return [s.strip() for s in text.split(",") if s.strip()]
