"""Small file systems for tests of a full or read-only disk (mounted as root)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def filesystem(directory: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``directory`` (read-only if asked); unmounted afterwards.

    A full or read-only disk is the file system's answer, not a permission: it holds for
    root too, which is what the tests run as.
    """
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"these tests mount a small tmpfs as a full or read-only disk, and mount failed: "
            f"{mounted.stderr.strip()} (run them as root, or with CAP_SYS_ADMIN)",
            pytrace=False,
        )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
