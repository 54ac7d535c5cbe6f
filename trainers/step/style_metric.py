"""Distances in StEP's two style spaces, as plain functions.

Image style: the Gram-matrix style loss over VGG16 features, computed for a
whole pool of images at once (``‖v_x − v_y‖²`` of per-image Gram vectors), and
triplets drawn from it (a positive among an anchor's nearest, a negative among
its farthest). Code style: the triplet hinge on codes, their L2, and IMLE's
nearest-sample distance between codes and mapped noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from trainers.step.settings import GRAM_LAYERS
from trainers.vgg import Vgg16Features


def vgg_view(images: torch.Tensor) -> torch.Tensor:
    """Images VGG16 can take: gray and RGB as they are, other channel counts one gray image per channel."""
    channels = images.shape[1]
    if channels in (1, 3):
        return images
    return images.reshape(-1, 1, *images.shape[-2:])


def gram_vectors(features: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``(N, D)`` per image such that ``‖v_x − v_y‖²`` is the Gram style distance of x and y.

    For layer ``l`` with ``N_l`` channels and ``M_l`` positions, ``G^l = F Fᵀ``;
    the distance is ``Σ_l w_l · 1/(4 N_l² M_l²) · Σ (G^l_x − G^l_y)²``, so each
    layer contributes ``√w_l · vec(G^l) / (2 N_l M_l)``.
    """
    parts = []
    for feature, weight in zip(features, weights):
        flat = feature.float().flatten(2)  # (N, C, M)
        channels, positions = flat.shape[1:]
        gram = flat @ flat.transpose(1, 2)
        parts.append(gram.flatten(1) * (math.sqrt(weight) / (2 * channels * positions)))
    return torch.cat(parts, dim=1)


def pairwise_squared_distances(vectors: torch.Tensor, block: int = 1 << 16) -> torch.Tensor:
    """``(N, N)`` squared Euclidean distances ``‖v_i‖² + ‖v_j‖² − 2 v_i·v_j``, accumulated in
    float64 over blocks of columns (no large temporaries, no float32 cancellation), then made
    exactly symmetric with a zero diagonal and no negative entries."""
    products = torch.zeros(len(vectors), len(vectors), dtype=torch.float64, device=vectors.device)
    for start in range(0, vectors.shape[1], block):
        part = vectors[:, start : start + block].double()
        products += part @ part.T
    norms = products.diagonal()
    distances = (norms[:, None] + norms[None, :] - 2 * products).clamp_min(0)
    distances = (distances + distances.T) / 2
    distances.fill_diagonal_(0)
    return distances.float()


@torch.no_grad()
def gram_style_distances(
    vgg: Vgg16Features,
    images: torch.Tensor,
    layers: Sequence[str] = GRAM_LAYERS,
    weights: Sequence[float] | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """``(N, N)`` Gram-matrix style distances between ``images`` ``(N, C, H, W)`` in [−1, 1].

    Images with other than 1 or 3 channels are compared channel by channel
    (each channel a gray image; the distances add up). Runs in float32.
    """
    weights = [1 / len(layers)] * len(layers) if weights is None else list(weights)
    device = next(vgg.parameters()).device
    vectors = []
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk].to(device).float()
        features = vgg(vgg_view(batch), layers)
        vectors.append(gram_vectors(features, weights).reshape(len(batch), -1))
    return pairwise_squared_distances(torch.cat(vectors))


def select_triplets(
    distances: torch.Tensor,
    anchors: torch.Tensor,
    positives_from: int = 5,
    negatives_from: int = 13,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor, a positive among its ``positives_from`` nearest and a negative among
    its ``negatives_from`` farthest other images (uniformly; ties by index).

    ``distances`` is ``(N, N)``; ``anchors`` indices into it. Returns
    ``(positives, negatives)`` as index tensors shaped like ``anchors``.
    """
    count = distances.shape[0]
    if distances.shape != (count, count):
        raise ValueError(f"distances must be a square matrix, got {tuple(distances.shape)}")
    if count - 1 < positives_from + negatives_from:
        raise ValueError(
            f"{count} images cannot give {positives_from} nearest and {negatives_from} farthest "
            "distinct others per anchor"
        )
    anchors = torch.as_tensor(anchors, dtype=torch.int64).reshape(-1)
    positives, negatives = [], []
    picks = torch.randint(0, 2**62, (len(anchors), 2), generator=generator)
    for anchor, (pick_near, pick_far) in zip(anchors.tolist(), picks.tolist()):
        row = distances[anchor].detach().double().cpu().clone()
        row[anchor] = math.inf  # never itself: sorted last, then dropped
        order = torch.sort(row, stable=True).indices[: count - 1]
        positives.append(int(order[pick_near % positives_from]))
        negatives.append(int(order[count - 1 - negatives_from + pick_far % negatives_from]))
    return torch.tensor(positives), torch.tensor(negatives)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float) -> torch.Tensor:
    """``mean(max(‖z_a − z_p‖² − ‖z_a − z_n‖² + α, 0))``."""
    near = (anchor.float() - positive.float()).square().sum(1)
    far = (anchor.float() - negative.float()).square().sum(1)
    return F.relu(near - far + margin).mean()


def code_l2(codes: torch.Tensor) -> torch.Tensor:
    """Mean over codes of ``‖z‖²``."""
    return codes.float().square().sum(1).mean()


def imle_loss(codes: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IMLE: each code's squared distance to its nearest sample, averaged; and the nearest indices.

    The choice of nearest sample carries no gradient; the distance does (into ``samples``).
    """
    with torch.no_grad():
        nearest = torch.cdist(codes.float(), samples.detach().float()).argmin(1)
    return (samples[nearest].float() - codes.float()).square().sum(1).mean(), nearest
