"""Atomic file writes: a reader sees either the old file or the complete new one, never a part.

The data goes to a temporary file in the destination folder, is flushed and ``fsync``-ed, then
``os.replace``-d onto the final name and the folder is ``fsync``-ed. ``exclusive=True`` refuses to
replace an existing file (append-only stores use it so a version can never be overwritten).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from napari_medseg.errors import StoreError

TMP_PREFIX = ".tmp-"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it is renamed onto ``dest``.

    The caller writes the temporary path (with any library). On an exception the temporary file
    is removed and ``dest`` is untouched. With ``exclusive=True`` the final step uses a hard link,
    which fails if ``dest`` appeared meanwhile, so an existing file is never replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if exclusive and dest.exists():
        raise StoreError(f"refusing to overwrite existing file {dest}")
    suffix = "".join(dest.suffixes)  # keep ".nii.gz" so libraries pick the right format
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    mode = 0o666 & ~_current_umask()  # mkstemp makes 0600; the file gets the usual permissions
    os.chmod(tmp, mode)
    try:
        try:
            yield tmp
        except OSError as err:  # name the file the user asked for, not our temporary one
            if err.filename is not None and Path(err.filename) == tmp:
                raise OSError(err.errno, err.strerror, str(dest)) from err
            raise
        # again: a library may have replaced the file (safetensors' save_file leaves it 0600), and
        # other users of a shared store or model registry must be able to read it
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise StoreError(f"refusing to overwrite existing file {dest}") from None
            tmp.unlink()
        else:
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(dest: str | os.PathLike, data: bytes, exclusive: bool = False) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest, exclusive=exclusive) as tmp:
        tmp.write_bytes(data)


def atomic_write_with(
    dest: str | os.PathLike, writer: Callable[[Path], None], exclusive: bool = False
) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``dest`` atomically."""
    with atomic_path(dest, exclusive=exclusive) as tmp:
        writer(tmp)
