"""Scans inside zip archives, as UK Biobank delivers them (one zip per participant and visit).

A path that runs through a `.zip` file names a member inside it:
`…/1234_20252_2_0.zip/T1/T1_brain_linearto_MNI.nii.gz`. Such a scan is read into memory from
the archive, never unpacked to disk; any other path is an ordinary file.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import nibabel as nib

ARCHIVE_SUFFIX = ".zip"


def split_archive(path: str | Path) -> tuple[Path, str] | None:
    """`(archive, member)` when `path` runs through a zip file, else None."""
    path = Path(path)
    for parent in path.parents:
        if parent.suffix == ARCHIVE_SUFFIX and parent.is_file():
            return parent, path.relative_to(parent).as_posix()
    return None


def scan_exists(path: str | Path) -> bool:
    """Whether the file exists; for a member, whether its archive exists and, when the archive's
    directory is readable, lists it (a corrupt archive counts as there: reading it names the
    problem)."""
    inside = split_archive(path)
    if inside is None:
        return Path(path).is_file()
    archive, member = inside
    try:
        with zipfile.ZipFile(archive) as opened:
            return member in opened.NameToInfo
    except (zipfile.BadZipFile, OSError):
        return True


def source_stat(path: str | Path) -> os.stat_result:
    """`os.stat` of the file, or of the archive holding it."""
    inside = split_archive(path)
    return os.stat(inside[0] if inside else path)


def read_nifti(path: str | Path) -> nib.Nifti1Image:
    """The NIfTI image at `path`: an ordinary file (read lazily by nibabel), or a member of a
    zip archive (`.nii` or `.nii.gz`), read and decompressed in memory. Raises
    `FileNotFoundError` for a missing file or member, `zipfile.BadZipFile` for a corrupt
    archive, and nibabel's or gzip's errors for a bad image."""
    inside = split_archive(path)
    if inside is None:
        return nib.load(str(path))
    archive, member = inside
    with zipfile.ZipFile(archive) as opened:
        if member not in opened.NameToInfo:
            raise FileNotFoundError(f"{archive} holds no {member}")
        data = opened.read(member)
    if member.endswith(".gz"):
        data = gzip.decompress(data)
    return nib.Nifti1Image.from_bytes(data)
