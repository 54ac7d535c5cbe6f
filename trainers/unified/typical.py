"""Each domain's typical style, measured on its training images when a run ends.

A user who wants "this domain's look" without a reference image or a random draw gets the
mean reference style of the domain's training images (on the multi-domain benchmark it beat
identity and histogram matching on every domain pair at 3 seeds; docs/benchmarks.md).
The moving-average model that is saved measures them, on one crop of each image, as the
loop's batches serve it.
"""

from __future__ import annotations

import numpy as np
import torch

from engines.unified import UnifiedModel
from trainers.class_folders import ClassPairs

# Per domain at most this many images, evenly spaced over its folder: the mean settles long before.
IMAGES_PER_DOMAIN = 256
BATCH = 32


@torch.no_grad()
def measure_typical_styles(model: UnifiedModel, dataset: ClassPairs, device: torch.device) -> torch.Tensor:
    """``(domains, style_dim)`` float32: per domain, the mean of ``E^u`` over its training images."""
    subset = dataset.classes
    means = []
    for domain, members in enumerate(subset.members):
        chosen = np.unique(np.linspace(0, len(members) - 1, min(len(members), IMAGES_PER_DOMAIN)).round()).astype(int)
        total = torch.zeros(model.config["style_dim"], device=device)
        for start in range(0, len(chosen), BATCH):
            images = torch.stack([subset[members[i]][0] for i in chosen[start:start + BATCH]]).to(device)
            labels = torch.full((len(images),), domain, dtype=torch.long, device=device)
            total += model.style_encoder(images, labels).float().sum(0)
        means.append(total / len(chosen))
    return torch.stack(means)
