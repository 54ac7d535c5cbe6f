"""Where training images come from: image files in folders, or one half of side-by-side A|B files.

Files are ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` directly in a
folder (``recursive=True`` for subfolders), sorted by path so runs are
repeatable. Hidden files are skipped (macOS leaves ``._name.png`` copies that
are not images); other files that are not images are skipped too, named in one
warning per dataset (:func:`warn_skipped`). Reading is the host's (:mod:`napari_i2i.core.image_io`), so
training sees a file exactly as inference does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from napari_i2i.core.constants import PILLOW_SUFFIXES, TIFF_SUFFIXES
from napari_i2i.core.image_io import ImageFileError, read_header, read_image
from napari_i2i.core.layer_data import ImageData

from trainers.datasets.problems import DatasetError, Problem

Read = TypeVar("Read")
SHOWN_SKIPPED = 10  # files named in the warning about skipped ones; the rest counted
# Training reads image files; zarr stores (folders, read lazily by translation) are not training images.
IMAGE_FILE_SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES


@dataclass(frozen=True)
class FileSource:
    """An image file, or one half of a side-by-side A|B file."""

    path: Path
    name: str
    half: int | None = None  # 0: left (A), 1: right (B)

    def header(self) -> tuple[tuple[int, ...], bool]:
        """Shape and RGB flag, from the header alone, as :meth:`read` will give them."""
        shape, rgb = self._decoded(read_header)
        if self.half is None:
            return shape, rgb
        shape = list(shape)
        x_axis = len(shape) - (2 if rgb else 1)
        if shape[x_axis] % 2:
            raise Problem(f"width {shape[x_axis]} is odd; a side-by-side A|B image splits in the middle")
        shape[x_axis] //= 2
        return tuple(shape), rgb

    def read(self) -> ImageData:
        image = self._decoded(read_image)
        data = image.data
        if self.half is not None:
            x_axis = data.ndim - (2 if image.rgb else 1)
            width = data.shape[x_axis] // 2
            index = [slice(None)] * data.ndim
            index[x_axis] = slice(self.half * width, (self.half + 1) * width)
            data = data[tuple(index)]
        return ImageData(data=data, name=self.name, rgb=image.rgb)

    def _decoded(self, reader: Callable[[Path], Read]) -> Read:
        try:
            return reader(self.path)
        except ImageFileError as error:
            raise Problem(str(error).removeprefix(f"{self.path}: ")) from None
        except Exception as error:  # decoders raise many types on corrupt files
            raise Problem(f"cannot read image: {error}") from None


def image_files(folder: Path, recursive: bool, skipped: list[Path] | None = None) -> list[Path]:
    """The image files in *folder*, sorted; the other (not hidden) files are added to *skipped*."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images, others = [], []
    for path in candidates:
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part.lower().endswith(".zarr") for part in parts) or not path.is_file():
            continue  # hidden, or inside a zarr store
        (images if path.suffix.lower() in IMAGE_FILE_SUFFIXES else others).append(path)
    if skipped is not None:
        skipped += others
    return sorted(images)


def warn_skipped(skipped: Sequence[Path], where: str, why: str = "") -> None:
    """One warning naming (up to :data:`SHOWN_SKIPPED` of) the files a dataset does not use."""
    if not skipped:
        return
    names = [f"{path.parent.name}/{path.name}" for path in sorted(skipped)]
    more = f" and {len(names) - SHOWN_SKIPPED} more" if len(names) > SHOWN_SKIPPED else ""
    kinds = '/'.join(sorted(IMAGE_FILE_SUFFIXES))
    warnings.warn(f"{where}: {len(names)} file(s) skipped, not {kinds} images{why}: "
                  f"{', '.join(names[:SHOWN_SKIPPED])}{more}", stacklevel=3)


def nonempty(files: list[Path], folder: Path) -> list[Path]:
    if not files:
        raise DatasetError(f"{folder}: no image files ({', '.join(sorted(IMAGE_FILE_SUFFIXES))})")
    return files


def named_source(file: Path, folder: Path) -> FileSource:
    return FileSource(file, f"{folder.name}/{file.relative_to(folder)}")


def by_stem(folder: Path, recursive: bool, problems: list[str], skipped: list[Path]) -> dict[str, Path]:
    """Files by relative path without suffix; two files sharing one (``x.png``, ``x.tif``) are a problem."""
    files: dict[str, list[Path]] = {}
    for file in nonempty(image_files(folder, recursive, skipped), folder):
        files.setdefault(str(file.relative_to(folder).with_suffix("")), []).append(file)
    for stem, same in files.items():
        if len(same) > 1:
            names = ", ".join(file.name for file in same)
            problems.append(f"{folder.name}/{stem}: {names} share one name; keep one")
    return {stem: same[0] for stem, same in files.items() if len(same) == 1}
