"""Training data: image files and arrays as CHW float32 tensors in [-1, 1].

Every dataset checks all of its images when it is built and raises one
:class:`DatasetError` naming each bad image and why, so nothing fails hours
into training. The rules:

- Files: ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` directly in a folder
  (``recursive=True`` for subfolders), sorted by path so runs are repeatable.
  Hidden files are skipped (macOS leaves ``._name.png`` copies that are not
  images).
- Channels of one image: PNG/JPEG colour and TIFF with RGB photometric are
  RGB (alpha dropped). A 3-D non-RGB image holds channels on its first axis
  when that axis is at most :data:`MAX_CHANNELS` long (``C, Y, X``), else on
  its last axis under the same limit (``Y, X, C``); anything else (z-stacks,
  time series) is rejected: one 2-D image per file. Leading axes of length 1
  are ignored. Arrays follow the same rule, RGB only when the caller says so
  (napari layers carry that flag).
- Channel count: each dataset yields ``channels`` channels, given or taken
  from the first readable image. Gray → 3 repeats the plane, RGB → 1 takes
  the luminance (ITU-R 601), as the host does at inference; any other
  mismatch is an error.
- Intensities: uint8 maps 0…255 to −1…1, bool 0/1 to −1/1. Any other type
  (uint16, other integers, float) maps its own 0.1…99.9 percentiles to −1…1,
  clipped: 16-bit microscopy rarely spans 0…65535 (a 12-bit camera fills
  1/16 of it) and a few hot pixels would squash a min–max scaling. Channels
  are scaled separately (fluorescence channels differ by orders of
  magnitude), except RGB, which is scaled as a whole to keep its colours. A
  constant channel maps to −1.
- Size: ``resize`` scales the short side to that many pixels first (bilinear,
  antialiased), then a random ``size`` crop is taken, as the MUNIT configs
  do. Without ``resize``, an image smaller than the crop is an error rather
  than silently upscaled (upscaling changes the pixel size a model learns).
  ``size=None`` keeps whole images (batches then need equal sizes).
- Randomness: with ``seed`` set, everything random about item ``index``
  comes from ``(seed, index)`` alone, so any item can be remade exactly
  (resume) whatever the DataLoader workers. Indices past ``len`` wrap around
  and draw new crops: :class:`InfiniteSampler` uses this to reshuffle each
  pass. Without ``seed``, draws come from torch's global RNG, which
  DataLoader seeds per worker.
- Memory: when the prepared (normalised, resized) float32 images of a
  dataset total at most ``cache_bytes`` (default :data:`CACHE_BYTES`, 1 GiB)
  they are kept in memory and an item costs only a crop; otherwise each item
  is read from disk. No file stays open, so datasets pickle into DataLoader
  workers (the cache is shared, not copied: torch puts tensors sent to
  workers in shared memory, and fork shares pages).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from napari_i2i.core.image_io import SUFFIXES, TIFF_SUFFIXES, ImageFileError, read_image
from napari_i2i.core.layer_data import LUMINANCE, PERCENTILES

MAX_CHANNELS = 8
CACHE_BYTES = 2**30
SHOWN_PROBLEMS = 50

# One random stream per purpose, so a single seed can serve a whole run.
_AUGMENT, _PAIRING, _SAMPLING, _SHUFFLE = range(4)


class DatasetError(ValueError):
    """Images unfit for training, every bad one named, so all can be fixed in one go."""

    def __init__(self, summary: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        lines = [f"  {problem}" for problem in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            lines.append(f"  … and {len(self.problems) - SHOWN_PROBLEMS} more")
        super().__init__("\n".join([summary, *lines]))


class _Problem(Exception):
    """Why one image cannot be used; whoever catches it adds the image's name."""


# --- one image: layout, reading, intensities, channels, size ---------------------------


@dataclass(frozen=True)
class _Layout:
    """Where one image's channels are and how large it is."""

    channel_axis: int | None  # 0: C,Y,X; -1: Y,X,C; None: Y,X
    channels: int
    rgb: bool
    height: int
    width: int


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _layout(shape: tuple[int, ...], rgb: bool) -> _Layout:
    shape = _squeezed(tuple(int(n) for n in shape))
    if len(shape) == 2:
        return _Layout(None, 1, False, *shape)
    if len(shape) == 3:
        if rgb and shape[-1] in (3, 4):
            return _Layout(-1, 3, True, shape[0], shape[1])
        if rgb and shape[0] in (3, 4):  # planar RGB TIFF
            return _Layout(0, 3, True, shape[1], shape[2])
        if shape[0] <= MAX_CHANNELS:
            return _Layout(0, shape[0], False, shape[1], shape[2])
        if shape[-1] <= MAX_CHANNELS:
            return _Layout(-1, shape[-1], False, shape[0], shape[1])
    raise _Problem(
        f"shape {shape} is not one 2-D image with at most {MAX_CHANNELS} channels "
        "(stacks: save one image per file)"
    )


def _channels_first(data: np.ndarray, layout: _Layout) -> np.ndarray:
    data = data.reshape(_squeezed(data.shape))
    if layout.channel_axis is None:
        data = data[None]
    elif layout.channel_axis == -1:
        data = np.moveaxis(data, -1, 0)
    return data[:3] if layout.rgb else data


def _file_header(path: Path) -> tuple[tuple[int, ...], bool]:
    """Shape and RGB flag from the header alone, as :func:`_read_file` will decode them."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                return tif.series[0].shape, tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        with Image.open(path) as image:
            width, height = image.size
            gray = image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;")
            return ((height, width) if gray else (height, width, 3)), not gray
    except Exception as error:  # decoders raise many types on corrupt files
        raise _Problem(f"cannot read image: {error}") from None


def _read_file(path: Path) -> tuple[np.ndarray, bool]:
    """Pixels and RGB flag; unlike ``read_image``, planar RGB TIFFs count as RGB."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                return tif.asarray(), tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        image = read_image(path)
        return np.asarray(image.data), image.rgb
    except ImageFileError as error:
        raise _Problem(str(error).removeprefix(f"{path}: ")) from None
    except Exception as error:  # decoders raise many types on corrupt files
        raise _Problem(f"cannot read image: {error}") from None


def _normalise(chw: np.ndarray, rgb: bool) -> np.ndarray:
    """float32 in [-1, 1]: uint8 and bool by their fixed range, anything else by percentiles."""
    if chw.dtype == np.uint8:
        return chw.astype(np.float32) * np.float32(2 / 255) - 1
    if chw.dtype == np.bool_:
        return chw.astype(np.float32) * 2 - 1
    if not (np.issubdtype(chw.dtype, np.integer) or np.issubdtype(chw.dtype, np.floating)):
        raise _Problem(f"cannot train on {chw.dtype} data")
    data = chw.astype(np.float32)
    low, high = np.percentile(data, PERCENTILES, axis=None if rgb else (1, 2), keepdims=True)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise _Problem("contains NaN or infinite values")
    data = (data - low) * (2 / np.maximum(high - low, 1e-12)) - 1
    return np.clip(data, -1, 1, out=data).astype(np.float32, copy=False)


def _conversion_problem(layout: _Layout, channels: int) -> str | None:
    if layout.channels == channels or (layout.channels == 1 and channels == 3):
        return None
    if layout.rgb and channels == 1:
        return None
    kind = " (not RGB)" if layout.channels == 3 else ""
    return (
        f"has {layout.channels} channel(s){kind}, the dataset uses {channels}; "
        "only gray → RGB and RGB → gray are converted"
    )


def _converted(image: np.ndarray, layout: _Layout, channels: int) -> np.ndarray:
    if layout.channels == channels:
        return image
    if layout.channels == 1:
        return np.repeat(image, channels, axis=0)
    return np.tensordot(LUMINANCE, image, axes=1)[None]  # RGB → gray: the only other case allowed


def _resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _resized(image: torch.Tensor, short_side: int | None) -> torch.Tensor:
    height, width = image.shape[-2:]
    size = _resized_shape(height, width, short_side)
    if size == (height, width):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


# --- where images come from ---------------------------------------------------------


@dataclass(frozen=True)
class _FileSource:
    """An image file, or one half of a side-by-side A|B file."""

    path: Path
    name: str
    half: int | None = None  # 0: left (A), 1: right (B)

    def header(self) -> _Layout:
        return self._halved(_layout(*_file_header(self.path)))

    def read(self) -> tuple[np.ndarray, _Layout]:
        data, rgb = _read_file(self.path)
        layout = _layout(data.shape, rgb)
        chw = _channels_first(data, layout)
        if self.half is not None:
            width = layout.width // 2
            chw = chw[..., self.half * width : (self.half + 1) * width]
        return chw, self._halved(layout)

    def _halved(self, layout: _Layout) -> _Layout:
        if self.half is None:
            return layout
        if layout.width % 2:
            raise _Problem(f"width {layout.width} is odd; a side-by-side A|B image splits in the middle")
        return replace(layout, width=layout.width // 2)


@dataclass(frozen=True, eq=False)
class _ArraySource:
    """An in-memory array (numpy, or anything ``np.asarray`` takes, e.g. a napari layer's data)."""

    array: object
    name: str
    rgb: bool

    def header(self) -> _Layout:
        return _layout(tuple(getattr(self.array, "shape", ())), self.rgb)

    def read(self) -> tuple[np.ndarray, _Layout]:
        data = np.asarray(self.array)
        layout = _layout(data.shape, self.rgb)
        return _channels_first(data, layout), layout


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in candidates
        if path.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )


def _nonempty(files: list[Path], folder: Path) -> list[Path]:
    if not files:
        raise DatasetError(f"{folder}: no image files ({', '.join(sorted(SUFFIXES))})")
    return files


# --- a validated set of images, and the random crop/flip -------------------------------


class _Domain:
    """The images of one domain: checked up front, then served normalised, converted and resized."""

    def __init__(
        self,
        sources: Sequence,
        channels: int | None,
        resize: int | None,
        crop: tuple[int, int] | None,
    ):
        self.sources = list(sources)
        self.resize = resize
        self.problems: list[tuple[int, str]] = []  # (image index, text), for listing in file order
        self.rejected: set[int] = set()  # images with a problem found in their header
        self.layouts: list[_Layout | None] = []
        for index, source in enumerate(self.sources):
            try:
                self.layouts.append(source.header())
            except _Problem as problem:
                self.layouts.append(None)
                self.rejected.add(index)
                self.problems.append((index, f"{source.name}: {problem}"))
        readable = [layout for layout in self.layouts if layout is not None]
        self.channels = channels if channels is not None else (readable[0].channels if readable else 1)
        for index, (source, layout) in enumerate(zip(self.sources, self.layouts)):
            if layout is None:
                continue
            reasons = [_conversion_problem(layout, self.channels)]
            if crop is not None and resize is None and (layout.height < crop[0] or layout.width < crop[1]):
                reasons.append(
                    f"{layout.height}×{layout.width} pixels, smaller than the {crop[0]}×{crop[1]} crop; "
                    f"pass resize={max(crop)} or more to upscale"
                )
            reasons = [reason for reason in reasons if reason]
            if reasons:
                self.rejected.add(index)
                self.problems += [(index, f"{source.name}: {reason}") for reason in reasons]
        self._cache: list[torch.Tensor] | None = None

    def nbytes(self) -> int:
        """Memory the prepared float32 images would take."""
        shapes = [_resized_shape(l.height, l.width, self.resize) for l in self.layouts if l is not None]
        return sum(4 * self.channels * height * width for height, width in shapes)

    def load(self, keep: bool) -> list[tuple[int, str]]:
        """Decode every image now so a corrupt one is reported before training; keep them if asked."""
        problems, images = [], []
        for index, source in enumerate(self.sources):
            if index in self.rejected:
                continue
            try:
                image = self._prepare(index)
            except _Problem as problem:
                problems.append((index, f"{source.name}: {problem}"))
                continue
            if keep:
                images.append(image)
        if keep and not problems:
            self._cache = images
        return problems

    def image(self, index: int) -> torch.Tensor:
        """The prepared image; the cached tensor itself, so callers must not modify it in place."""
        if self._cache is not None:
            return self._cache[index]
        try:
            return self._prepare(index)
        except _Problem as problem:  # only when built with verify=False
            raise DatasetError(
                "an image failed to load during training (the dataset was built with verify=False)",
                [f"{self.sources[index].name}: {problem}"],
            ) from None

    def _prepare(self, index: int) -> torch.Tensor:
        chw, layout = self.sources[index].read()
        if layout != self.layouts[index]:
            raise _Problem(
                f"decoded as {layout.channels} channel(s) of {layout.height}×{layout.width} pixels, "
                "which its header does not say"
            )
        image = _converted(_normalise(chw, layout.rgb), layout, self.channels)
        return _resized(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), self.resize)


def _load(
    domains: Sequence[_Domain], problems: Sequence[str], summary: str, verify: bool, cache_bytes: int
) -> None:
    """Raise every problem at once, after decoding all images when verifying or caching.

    Problems of single images are listed in image order, after *problems* (those of the whole set).
    """
    found = [(index, d, text) for d, domain in enumerate(domains) for index, text in domain.problems]
    keep = not problems and not found and sum(domain.nbytes() for domain in domains) <= cache_bytes
    if verify or keep:
        found += [(index, d, text) for d, domain in enumerate(domains) for index, text in domain.load(keep)]
    # dict.fromkeys drops repeats: both halves of a side-by-side file fail alike
    listed = list(dict.fromkeys([*problems, *(text for _, _, text in sorted(found))]))
    if listed:
        raise DatasetError(f"{summary}: {len(listed)} problem(s)", listed)


@dataclass(frozen=True)
class _Augment:
    """Random crop and horizontal flip, the same for all images passed together (pairs stay aligned)."""

    size: tuple[int, int] | None
    flip: bool

    def __call__(self, images: Sequence[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
        height, width = images[0].shape[-2:]
        crop_height, crop_width = self.size or (height, width)
        top = int(rng.integers(height - crop_height + 1))
        left = int(rng.integers(width - crop_width + 1))
        flipped = rng.random() < 0.5 and self.flip  # always drawn: flip on/off keeps the same crops
        pieces = [image[:, top : top + crop_height, left : left + crop_width] for image in images]
        return [piece.flip(-1) if flipped else piece.clone() for piece in pieces]  # never the cache itself


def _crop_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    crop = (size, size) if isinstance(size, int) else tuple(size)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"size must be a positive int or (height, width), not {size!r}")
    return crop


def _check_resize(resize: int | None, crop: tuple[int, int] | None) -> None:
    if resize is not None and (resize < 1 or (crop is not None and resize < max(crop))):
        raise ValueError(f"resize={resize} must be at least the crop size {crop}")


def _rng(seed: int | None, *key: int) -> np.random.Generator:
    """From ``(seed, key)`` alone when seeded, so an item can be remade exactly; else from torch's RNG."""
    if seed is None:
        return np.random.default_rng(int(torch.randint(2**62, ())))
    return np.random.default_rng([seed, *key])


def _checked_index(index: int) -> int:
    index = operator.index(index)
    if index < 0:
        raise IndexError(f"index {index} is negative")
    return index


# --- public datasets ---------------------------------------------------------------------


class _Images(Dataset):
    """Single images of one domain; subclasses differ only in where the images come from."""

    def __init__(
        self,
        sources: Sequence,
        summary: str,
        problems: Sequence[str] = (),
        *,
        channels: int | None,
        size: int | tuple[int, int] | None,
        resize: int | None,
        flip: bool,
        seed: int | None,
        verify: bool,
        cache_bytes: int,
    ):
        crop = _crop_size(size)
        _check_resize(resize, crop)
        self.domain = _Domain(sources, channels, resize, crop)
        self.augment = _Augment(crop, flip)
        self.seed = seed
        _load([self.domain], problems, summary, verify, cache_bytes)

    @property
    def channels(self) -> int:
        return self.domain.channels

    @property
    def names(self) -> list[str]:
        return [source.name for source in self.domain.sources]

    def __len__(self) -> int:
        return len(self.domain.sources)

    def __getitem__(self, index: int) -> torch.Tensor:
        """A ``(channels, H, W)`` crop; ``index >= len`` wraps to image ``index % len`` with new crops."""
        index = _checked_index(index)
        image = self.domain.image(index % len(self))
        return self.augment([image], _rng(self.seed, _AUGMENT, index))[0]


class ImageFolder(_Images):
    """The images in one folder, for one domain of unpaired training (UNIT, MUNIT)."""

    def __init__(
        self,
        path: str | Path,
        *,
        channels: int | None = None,
        size: int | tuple[int, int] | None = 256,
        resize: int | None = None,
        flip: bool = True,
        seed: int | None = None,
        recursive: bool = False,
        verify: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ):
        folder = Path(path)
        files = _nonempty(_image_files(folder, recursive), folder)
        super().__init__(
            [_FileSource(file, str(file.relative_to(folder))) for file in files],
            f"images in {folder}",
            channels=channels, size=size, resize=resize, flip=flip,
            seed=seed, verify=verify, cache_bytes=cache_bytes,
        )  # fmt: skip


class ArrayImages(_Images):
    """In-memory 2-D/3-D arrays (e.g. napari layers' data), checked and served like files.

    ``rgb`` (one flag, or one per array) says which arrays hold RGB(A) colour
    on their last axis, as napari's ``layer.rgb`` does. Errors name arrays by
    index, and by ``names`` when given.
    """

    def __init__(
        self,
        arrays: Sequence,
        *,
        rgb: bool | Sequence[bool] = False,
        names: Sequence[str] | None = None,
        channels: int | None = None,
        size: int | tuple[int, int] | None = 256,
        resize: int | None = None,
        flip: bool = True,
        seed: int | None = None,
        verify: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ):
        if len(arrays) == 0:
            raise DatasetError("no arrays given")
        flags = [rgb] * len(arrays) if isinstance(rgb, bool) else list(rgb)
        labels = [f"array {i}" + (f" ({names[i]})" if names else "") for i in range(len(arrays))]
        if len(flags) != len(arrays) or (names is not None and len(names) != len(arrays)):
            raise ValueError("rgb and names need one entry per array")
        super().__init__(
            [_ArraySource(array, label, flag) for array, label, flag in zip(arrays, labels, flags)],
            f"{len(arrays)} array(s)",
            channels=channels, size=size, resize=resize, flip=flip,
            seed=seed, verify=verify, cache_bytes=cache_bytes,
        )  # fmt: skip


class ClassFolders(_Images):
    """One subfolder of images per class (FUNIT); items are ``(image, class_index)``.

    Classes are the subfolders' names, sorted; their image counts may differ.
    Files directly in ``root`` are ignored.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        channels: int | None = None,
        size: int | tuple[int, int] | None = 128,
        resize: int | None = None,
        flip: bool = True,
        seed: int | None = None,
        recursive: bool = False,
        verify: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: no such folder")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DatasetError(f"{root}: no class subfolders")
        sources, problems, self.labels = [], [], []
        self.classes = [folder.name for folder in folders]
        self._members: list[list[int]] = []
        for label, folder in enumerate(folders):
            files = _image_files(folder, recursive)
            if not files:
                problems.append(f"{folder.name}/: class has no image files")
            self._members.append(list(range(len(sources), len(sources) + len(files))))
            sources += [_FileSource(file, str(file.relative_to(root))) for file in files]
            self.labels += [label] * len(files)
        super().__init__(
            sources, f"classes in {root}", problems,
            channels=channels, size=size, resize=resize, flip=flip,
            seed=seed, verify=verify, cache_bytes=cache_bytes,
        )  # fmt: skip

    @property
    def counts(self) -> list[int]:
        return [len(members) for members in self._members]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return super().__getitem__(index), self.labels[_checked_index(index) % len(self)]

    def sample(self, class_index: int, k: int, key: int | None = None) -> torch.Tensor:
        """``k`` different images of one class, augmented, as ``(k, channels, H, W)``.

        With a seeded dataset and an int ``key`` (e.g. the training step) the
        draw is repeatable; otherwise it comes from torch's global RNG.
        """
        members = self._members[class_index]
        if not 1 <= k <= len(members):
            raise ValueError(
                f"class {self.classes[class_index]!r} has {len(members)} image(s); cannot sample {k}"
            )
        rng = _rng(None if key is None else self.seed, _SAMPLING, class_index, key or 0)
        chosen = rng.choice(members, size=k, replace=False)
        return torch.stack([self.augment([self.domain.image(int(i))], rng)[0] for i in chosen])


class PairedFolders(Dataset):
    """Aligned pairs (StEP, pix2pix-style): items are ``(x_a, x_b)`` with the same crop and flip.

    Either two folders whose files pair by name without suffix (``x.png`` in
    ``dir_a`` with ``x.tif`` in ``dir_b``), or, without ``dir_b``, one folder
    of side-by-side A|B images split in the middle. Paired images must have
    the same size; A and B may have different channel counts.
    """

    def __init__(
        self,
        dir_a: str | Path,
        dir_b: str | Path | None = None,
        *,
        channels_a: int | None = None,
        channels_b: int | None = None,
        size: int | tuple[int, int] | None = 256,
        resize: int | None = None,
        flip: bool = True,
        seed: int | None = None,
        recursive: bool = False,
        verify: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ):
        crop = _crop_size(size)
        _check_resize(resize, crop)
        problems: list[str] = []
        if dir_b is None:
            folder = Path(dir_a)
            files = _nonempty(_image_files(folder, recursive), folder)
            names = [str(file.relative_to(folder)) for file in files]
            sources_a = [_FileSource(file, name, half=0) for file, name in zip(files, names)]
            sources_b = [_FileSource(file, name, half=1) for file, name in zip(files, names)]
            summary = f"side-by-side A|B images in {folder}"
        else:
            folder_a, folder_b = Path(dir_a), Path(dir_b)
            files_a = _by_stem(folder_a, recursive, problems)
            files_b = _by_stem(folder_b, recursive, problems)
            for stem in sorted(files_a.keys() - files_b.keys()):
                problems.append(f"{folder_a.name}/{stem}: no image of that name in {folder_b}")
            for stem in sorted(files_b.keys() - files_a.keys()):
                problems.append(f"{folder_b.name}/{stem}: no image of that name in {folder_a}")
            stems = sorted(files_a.keys() & files_b.keys())
            sources_a = [_named_source(files_a[stem], folder_a) for stem in stems]
            sources_b = [_named_source(files_b[stem], folder_b) for stem in stems]
            summary = f"image pairs in {folder_a} and {folder_b}"
        self.a = _Domain(sources_a, channels_a, resize, crop)
        self.b = _Domain(sources_b, channels_b, resize, crop)
        for source, layout_a, layout_b in zip(sources_a, self.a.layouts, self.b.layouts):
            if layout_a is None or layout_b is None:
                continue
            if (layout_a.height, layout_a.width) != (layout_b.height, layout_b.width):
                problems.append(
                    f"{source.name}: A is {layout_a.height}×{layout_a.width} pixels, "
                    f"B {layout_b.height}×{layout_b.width}; pairs must be the same size"
                )
        self.augment = _Augment(crop, flip)
        self.seed = seed
        _load([self.a, self.b], problems, summary, verify, cache_bytes)

    @property
    def channels_a(self) -> int:
        return self.a.channels

    @property
    def channels_b(self) -> int:
        return self.b.channels

    def __len__(self) -> int:
        return len(self.a.sources)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = _checked_index(index)
        i = index % len(self)
        x_a, x_b = self.augment([self.a.image(i), self.b.image(i)], _rng(self.seed, _AUGMENT, index))
        return x_a, x_b


def _named_source(file: Path, folder: Path) -> _FileSource:
    return _FileSource(file, f"{folder.name}/{file.relative_to(folder)}")


def _by_stem(folder: Path, recursive: bool, problems: list[str]) -> dict[str, Path]:
    """Files by relative path without suffix; two files sharing one (``x.png``, ``x.tif``) are a problem."""
    files: dict[str, list[Path]] = {}
    for file in _nonempty(_image_files(folder, recursive), folder):
        files.setdefault(str(file.relative_to(folder).with_suffix("")), []).append(file)
    for stem, same in files.items():
        if len(same) > 1:
            names = ", ".join(file.name for file in same)
            problems.append(f"{folder.name}/{stem}: {names} share one name; keep one")
    return {stem: same[0] for stem, same in files.items() if len(same) == 1}


class UnpairedDomains(Dataset):
    """Two unpaired domains (UNIT, MUNIT): items are ``(x_a, x_b)``.

    Item ``index`` takes ``domain_a[index]`` and an independent random image
    of ``domain_b``; ``len`` is the larger domain's, and A wraps when it is
    the smaller. Both domains must accept any index >= 0, as this module's
    datasets do (the index selects their augmentation too).
    """

    def __init__(self, domain_a: Dataset, domain_b: Dataset, *, seed: int | None = None):
        self.domain_a, self.domain_b, self.seed = domain_a, domain_b, seed

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = _checked_index(index)
        count_b = len(self.domain_b)
        draw = int(_rng(self.seed, _PAIRING, index).integers(count_b))
        return self.domain_a[index], self.domain_b[draw + count_b * index]  # unique index: fresh crop of B


class InfiniteSampler(Sampler[int]):
    """Endless reshuffled indices for step-based training, exactly resumable.

    Pass ``p`` yields a fresh permutation of ``range(length)`` offset by
    ``p * length``, which this module's seeded datasets turn into image
    ``i % length`` with new crops. Position ``k`` of the stream depends only
    on ``(seed, k)``: resume after ``steps`` batches with
    ``start=steps * batch_size``.
    """

    def __init__(self, length: int, seed: int, start: int = 0):
        if length < 1:
            raise ValueError("an InfiniteSampler needs length >= 1")
        self.length, self.seed, self.start = length, seed, start

    def __iter__(self) -> Iterator[int]:
        position = self.start
        while True:
            rounds, offset = divmod(position, self.length)
            order = np.random.default_rng([self.seed, _SHUFFLE, rounds]).permutation(self.length)
            for i in order[offset:]:
                yield rounds * self.length + int(i)
            position = (rounds + 1) * self.length
