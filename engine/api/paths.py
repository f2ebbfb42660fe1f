"""Local file paths out of the error texts the API serves.

Job and batch errors name the export that failed (``ParseError`` carries the
file), and storage errors may name the database file. The GET endpoints need
no token, so the API shows such paths relative to the source folder and hides
the home and temporary folders (``~``, ``$TMPDIR``): a reader learns which
export failed, not how the machine is laid out.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from engine.settings import SourceSettings


class PathRedactor:
    """Replaces absolute path prefixes in text; the longest prefix wins.

    Args:
        prefixes: absolute folder -> what is shown instead (``""`` makes the
            paths below it relative). A prefix only matches a whole path
            component: ``/home/ann`` leaves ``/home/anna`` alone.
    """

    def __init__(self, *, prefixes: dict[str, str]) -> None:
        ordered = sorted(
            ((p.rstrip("/\\"), shown) for p, shown in prefixes.items() if p.strip("/\\")),
            key=lambda item: -len(item[0]),
        )
        self._shown = dict(ordered)
        self._pattern = (
            re.compile(
                r"(?<![\w.-])("
                + "|".join(re.escape(p) for p, _ in ordered)
                + r")(?:[/\\]|(?![\w.-]))"
            )
            if ordered
            else None
        )

    def __call__(self, text: str) -> str:
        """``text`` with every known prefix replaced."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(self._replace, text)

    def optional(self, text: str | None) -> str | None:
        """:meth:`__call__` for a value that may be missing."""
        return None if text is None else self(text)

    def _replace(self, match: re.Match[str]) -> str:
        shown = self._shown[match.group(1)]
        separator = match.group(0)[len(match.group(1)) :]
        if not shown:  # below the source folder: relative; the folder itself: "."
            return "" if separator else "."
        return shown + separator


def redactor_for(source: SourceSettings) -> PathRedactor:
    """The redactor for a server of ``source``: its folder (when it is one), home and temp.

    Each folder is matched as configured and with its links resolved.
    """
    folders: list[tuple[str, str]] = [
        (tempfile.gettempdir(), "$TMPDIR"),
        (str(Path.home()), "~"),
    ]
    if source.source != "sim" and not source.source.startswith(("http://", "https://")):
        folders.append((os.path.abspath(source.source), ""))
    prefixes: dict[str, str] = {}
    for folder, shown in folders:  # later entries win: the source folder over home and temp
        for form in {folder, os.path.realpath(folder)}:
            prefixes[form] = shown
    return PathRedactor(prefixes=prefixes)


__all__ = ["PathRedactor", "redactor_for"]
