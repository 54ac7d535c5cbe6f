"""A frozen VGG16 feature extractor for perceptual and style losses.

Used by MUNIT's optional domain-invariant perceptual loss (and meant for
StEP's Gram-matrix style distance). The architecture is torchvision's
``vgg16`` (its ``features`` part only); nothing is ever downloaded. Weights
come, in this order, from

1. an explicit file (the ``vgg_weights`` training setting),
2. torch's hub cache, ``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``,
   where an earlier ``torchvision.models.vgg16(weights="IMAGENET1K_V1")``
   put them,
3. optionally a fixed-seed random initialisation (``fallback_seed``), for
   callers whose loss still means something with random filters.

Files are read without unpickling objects: ``torch.load(weights_only=True)``
for ``.pt``/``.pth``, or safetensors. The layout is torchvision's state dict
(``features.N.weight``; the ``classifier`` part is ignored) or the state
dict of ``vgg16().features`` alone (``N.weight``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

HUB_FILE_NAME = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    """``conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, …, pool5`` in ``features`` order."""
    names = []
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for index in range(1, convs + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYERS = _layer_names()


class VggWeightsError(ValueError):
    """A VGG16 weights file that is missing, unreadable or not VGG16's."""


class VggWeightsNotFound(VggWeightsError):
    """No file was named and the torch hub cache has none."""


def hub_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE_NAME


def find_vgg16_weights(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The weights file to use and its source label (``file:PATH`` or ``torch-cache:PATH``).

    A named file that does not exist is a :class:`VggWeightsError`; finding
    nothing without a name is a :class:`VggWeightsNotFound`.
    """
    if path is not None and str(path) != "":
        file = Path(path).expanduser()
        if not file.is_file():
            raise VggWeightsError(f"{file}: no such VGG16 weights file")
        return file, f"file:{file}"
    cache = hub_cache_file()
    if cache.is_file():
        return cache, f"torch-cache:{cache}"
    raise VggWeightsNotFound(
        f"no VGG16 weights: no file was named (setting vgg_weights) and the torch cache has no {cache}"
    )


def _read_tensors(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:  # weights_only: tensors and plain containers, never arbitrary objects
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, foreign pickle, not a checkpoint at all
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VggWeightsError(f"{path}: not a readable VGG16 weights file ({reason})") from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VggWeightsError(f"{path}: expected a state dict of tensors (torchvision's vgg16 layout)")
    return state


def load_features_state(path: str | os.PathLike, features: nn.Module) -> dict[str, torch.Tensor]:
    """The ``features`` tensors of a VGG16 file, checked key by key against *features*."""
    path = Path(path)
    state = _read_tensors(path)
    if any(key.startswith("features.") for key in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    expected = features.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise VggWeightsError(
            f"{path}: not VGG16 weights: missing {', '.join(missing[:4])}"
            + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            + " (expected torchvision's vgg16 state dict)"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise VggWeightsError(
                f"{path}: not VGG16 weights: features.{key} has shape {tuple(state[key].shape)}, "
                f"VGG16 needs {tuple(tensor.shape)}"
            )
    return {key: state[key].float() for key in expected}


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features``, built without initialising (meta device)."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        features = vgg16(weights=None).features
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False  # conv outputs are returned as features too
    return features


class Vgg16Features(nn.Module):
    """Frozen VGG16 ``features`` in eval mode; inputs are images in [-1, 1].

    Gray inputs are repeated to three channels; the ImageNet normalisation
    the weights expect is applied inside. ``source`` says where the weights
    came from (``file:PATH``, ``torch-cache:PATH`` or ``random:seed=N``).
    """

    def __init__(self, features: nn.Sequential, source: str) -> None:
        super().__init__()
        self.features = features
        self.source = source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Vgg16Features:
        return super().train(False)  # always a fixed feature extractor

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"VGG16 takes (N, C, H, W) images, got shape {tuple(images.shape)}")
        channels = images.shape[1]
        if channels == 1:
            images = images.expand(-1, 3, -1, -1)
        elif channels != 3:
            raise ValueError(f"VGG16 takes gray (1-channel) or RGB (3-channel) images, got {channels} channels")
        return ((images + 1) / 2 - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor, layers: Sequence[str] = ("relu5_3",)) -> list[torch.Tensor]:
        """The features at *layers* (names from :data:`LAYERS`), in the order asked."""
        unknown = [name for name in layers if name not in LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {', '.join(LAYERS)}")
        wanted = {LAYERS.index(name): name for name in layers}
        found: dict[str, torch.Tensor] = {}
        x = self.preprocess(images)
        for index, module in enumerate(self.features[: max(wanted) + 1]):
            x = module(x)
            if index in wanted:
                found[wanted[index]] = x
        return [found[name] for name in layers]


def load_vgg16(
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    fallback_seed: int | None = None,
) -> tuple[Vgg16Features, str]:
    """The frozen extractor on *device* and where its weights came from.

    Without *fallback_seed*, finding no weights raises :class:`VggWeightsNotFound`;
    with it, the network is initialised randomly from that seed (He init, as
    torchvision) and the source is ``random:seed=N``. A named file that is
    missing, unreadable or of the wrong shape is always an error naming it.
    """
    features = _vgg16_features()
    try:
        path, source = find_vgg16_weights(weights)
    except VggWeightsNotFound:
        if fallback_seed is None:
            raise
        features = features.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(fallback_seed)
        for module in features:
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                with torch.no_grad():
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_out) ** 0.5)
                    module.bias.zero_()
        source = f"random:seed={fallback_seed}"
    else:
        features.load_state_dict(load_features_state(path, features), assign=True)
    return Vgg16Features(features, source).to(device), source
