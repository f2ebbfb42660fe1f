"""The command line's two rich consoles: ``out`` (standard output) and ``err``.

Written to a file or a pipe (not a terminal) and with no ``COLUMNS`` set, they are
:data:`PIPED_WIDTH` columns wide instead of rich's 80, so that tables keep their dates,
states and reasons whole in ``recon status > file`` or ``| less``.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console as RichConsole

PIPED_WIDTH = 200


def _console(stream: TextIO, *, stderr: bool) -> RichConsole:
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return RichConsole(stderr=stderr, width=PIPED_WIDTH if piped else None)


out = _console(sys.stdout, stderr=False)
err = _console(sys.stderr, stderr=True)

__all__ = ["PIPED_WIDTH", "err", "out"]
