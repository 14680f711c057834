"""Cache directories written atomically: readers see a complete directory or none.

``with atomic_dir(root) as tmp:`` yields a fresh directory beside ``root``; when the block ends
normally it replaces ``root`` (one ``os.replace``), and when it raises it is removed and ``root``
stays as it was. ``complete(root, write)`` is the usual use: ``write(tmp)`` runs once, a ``COMPLETE``
marker is added, and later calls find the marker and write nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

MARKER = "COMPLETE"


@contextlib.contextmanager
def atomic_dir(root: str | Path) -> Iterator[Path]:
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        yield tmp
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def complete(root: str | Path, write: Callable[[Path], object], marker_text: str = "") -> Path:
    """``root``, written by ``write(tmp)`` unless it already holds the ``COMPLETE`` marker."""
    root = Path(root)
    if not (root / MARKER).is_file():
        with atomic_dir(root) as tmp:
            write(tmp)
            (tmp / MARKER).write_text(marker_text)
    return root
