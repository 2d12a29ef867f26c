"""`--src` may name an archive (CROHME and MathWriting ship as .tar.xz / .tgz, many sets as .zip): it is
unpacked beside `--out` for the import and removed afterwards, so the import reads it like a folder and the
archive itself is never touched."""

from __future__ import annotations

import lzma
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@contextmanager
def unpacked(archive: Path, beside: Path) -> Iterator[Path]:
    """A temporary folder holding the archive's files; raises ValueError for an unreadable archive."""
    beside.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{archive.name}.unpacked-", dir=beside))
    try:
        try:
            if archive.name.lower().endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:  # zipfile keeps members inside the folder itself
                    zf.extractall(folder)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(folder, filter="data")  # no absolute paths, links out or devices
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, OSError) as e:
            raise ValueError(f"--src {archive} is not a readable archive: {type(e).__name__}: {e}") from None
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
