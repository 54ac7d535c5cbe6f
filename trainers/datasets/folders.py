"""Datasets of single images: one folder (UNIT, MUNIT domains) or one subfolder per class (FUNIT)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from trainers.datasets.augment import AUGMENT, SAMPLING, Augment, check_resize, checked_index, crop_size, rng
from trainers.datasets.domain import CACHE_BYTES, Domain, load_domains
from trainers.datasets.problems import DatasetError
from trainers.datasets.sources import FileSource, image_files, nonempty, warn_skipped


class _Images(Dataset):
    """Single images of one domain; subclasses differ only in where the images come from."""

    def __init__(
        self,
        sources: Sequence[FileSource],
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
        crop = crop_size(size)
        check_resize(resize, crop)
        self.domain = Domain(sources, channels, resize, crop)
        self.augment = Augment(crop, flip)
        self.seed = seed
        load_domains([self.domain], problems, summary, verify, cache_bytes)

    @property
    def channels(self) -> int:
        return self.domain.channels

    @property
    def names(self) -> list[str]:
        return self.domain.names

    def __len__(self) -> int:
        return len(self.domain.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        """A ``(channels, H, W)`` crop; ``index >= len`` wraps to image ``index % len`` with new crops."""
        index = checked_index(index)
        image = self.domain.image(index % len(self))
        return self.augment([image], rng(self.seed, AUGMENT, index))[0]


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
        skipped: list[Path] = []
        files = nonempty(image_files(folder, recursive, skipped), folder)
        warn_skipped(skipped, f"images in {folder}")
        super().__init__(
            [FileSource(file, str(file.relative_to(folder))) for file in files],
            f"images in {folder}",
            channels=channels, size=size, resize=resize, flip=flip,
            seed=seed, verify=verify, cache_bytes=cache_bytes,
        )  # fmt: skip


class ClassFolders(_Images):
    """One subfolder of images per class (FUNIT); items are ``(image, class_index)``.

    Classes are the subfolders' names, sorted; their image counts may differ
    (a stack's planes count one each). Files directly in ``root`` are not used
    (named in a warning, as are files in class folders that are not images).
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
        sources, problems, source_labels = [], [], []
        skipped = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        self.classes = [folder.name for folder in folders]
        for label, folder in enumerate(folders):
            files = image_files(folder, recursive, skipped)
            if not files:
                problems.append(f"{folder.name}/: class has no image files")
            sources += [FileSource(file, str(file.relative_to(root))) for file in files]
            source_labels += [label] * len(files)
        warn_skipped(skipped, f"classes in {root}", why=" in a class subfolder")
        super().__init__(
            sources, f"classes in {root}", problems,
            channels=channels, size=size, resize=resize, flip=flip,
            seed=seed, verify=verify, cache_bytes=cache_bytes,
        )  # fmt: skip
        self.labels = [source_labels[source] for source, _ in self.domain.items]
        self._members: list[list[int]] = [[] for _ in folders]
        for item, label in enumerate(self.labels):
            self._members[label].append(item)

    @property
    def counts(self) -> list[int]:
        return [len(members) for members in self._members]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return super().__getitem__(index), self.labels[checked_index(index) % len(self)]

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
        draws = rng(None if key is None else self.seed, SAMPLING, class_index, key or 0)
        chosen = draws.choice(members, size=k, replace=False)
        return torch.stack([self.augment([self.domain.image(int(i))], draws)[0] for i in chosen])
