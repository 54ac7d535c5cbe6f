"""Datasets of two domains: aligned pairs (StEP) or two unpaired domains (UNIT, MUNIT)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from trainers.datasets.augment import AUGMENT, PAIRING, Augment, check_resize, checked_index, crop_size, rng
from trainers.datasets.domain import CACHE_BYTES, Domain, load_domains
from trainers.datasets.sources import FileSource, by_stem, image_files, named_source, nonempty, warn_skipped


class PairedFolders(Dataset):
    """Aligned pairs (StEP, pix2pix-style): items are ``(x_a, x_b)`` with the same crop and flip.

    Either two folders whose files pair by name without suffix (``x.png`` in
    ``dir_a`` with ``x.tif`` in ``dir_b``), or, without ``dir_b``, one folder
    of side-by-side A|B images split in the middle. Paired images must have
    the same size and plane count (plane *i* of A pairs with plane *i* of B);
    A and B may have different channel counts.
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
        crop = crop_size(size)
        check_resize(resize, crop)
        problems: list[str] = []
        skipped: list[Path] = []
        if dir_b is None:
            folder = Path(dir_a)
            files = nonempty(image_files(folder, recursive, skipped), folder)
            names = [str(file.relative_to(folder)) for file in files]
            sources_a = [FileSource(file, name, half=0) for file, name in zip(files, names)]
            sources_b = [FileSource(file, name, half=1) for file, name in zip(files, names)]
            summary = f"side-by-side A|B images in {folder}"
        else:
            folder_a, folder_b = Path(dir_a), Path(dir_b)
            files_a = by_stem(folder_a, recursive, problems, skipped)
            files_b = by_stem(folder_b, recursive, problems, skipped)
            for stem in sorted(files_a.keys() - files_b.keys()):
                problems.append(f"{folder_a.name}/{stem}: no image of that name in {folder_b}")
            for stem in sorted(files_b.keys() - files_a.keys()):
                problems.append(f"{folder_b.name}/{stem}: no image of that name in {folder_a}")
            stems = sorted(files_a.keys() & files_b.keys())
            sources_a = [named_source(files_a[stem], folder_a) for stem in stems]
            sources_b = [named_source(files_b[stem], folder_b) for stem in stems]
            summary = f"image pairs in {folder_a} and {folder_b}"
        warn_skipped(skipped, summary)
        self.a = Domain(sources_a, channels_a, resize, crop)
        self.b = Domain(sources_b, channels_b, resize, crop)
        for source, planes_a, planes_b in zip(sources_a, self.a.arrangements, self.b.arrangements):
            if planes_a is None or planes_b is None:
                continue
            if (planes_a.height, planes_a.width) != (planes_b.height, planes_b.width):
                problems.append(
                    f"{source.name}: A is {planes_a.height}×{planes_a.width} pixels, "
                    f"B {planes_b.height}×{planes_b.width}; pairs must be the same size"
                )
            elif planes_a.n_planes != planes_b.n_planes:
                problems.append(
                    f"{source.name}: A has {planes_a.n_planes} plane(s), B {planes_b.n_planes}; "
                    "plane i of A pairs with plane i of B"
                )
        self.augment = Augment(crop, flip)
        self.seed = seed
        load_domains([self.a, self.b], problems, summary, verify, cache_bytes)

    @property
    def channels_a(self) -> int:
        return self.a.channels

    @property
    def channels_b(self) -> int:
        return self.b.channels

    def __len__(self) -> int:
        return len(self.a.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = checked_index(index)
        i = index % len(self)
        x_a, x_b = self.augment([self.a.image(i), self.b.image(i)], rng(self.seed, AUGMENT, index))
        return x_a, x_b


class UnpairedDomains(Dataset):
    """Two unpaired domains (UNIT, MUNIT): items are ``(x_a, x_b)``.

    Item ``index`` takes ``domain_a[index]`` and an independent random image
    of ``domain_b``; ``len`` is the larger domain's, and A wraps when it is
    the smaller. Both domains must accept any index >= 0, as this package's
    datasets do (the index selects their augmentation too).
    """

    def __init__(self, domain_a: Dataset, domain_b: Dataset, *, seed: int | None = None):
        self.domain_a, self.domain_b, self.seed = domain_a, domain_b, seed

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = checked_index(index)
        count_b = len(self.domain_b)
        draw = int(rng(self.seed, PAIRING, index).integers(count_b))
        return self.domain_a[index], self.domain_b[draw + count_b * index]  # unique index: fresh crop of B
