"""StEP's training settings (``[training]``) and presets; ``docs/methods.md`` §4 for the values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from napari_i2i.contract.trainer_api import MethodSettings

STAGES = ("style", "generator", "finetune", "mapper")
# "conv1_2 … conv5_2" of the style loss, as the responses after their ReLU (Gatys et al.'s layers).
GRAM_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # pix2pixHD's
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


@dataclass
class StepTrainConfig(MethodSettings):
    """StEP's training settings; the defaults are the published ones where docs/methods.md gives them."""

    method: ClassVar[str] = "StEP"
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # which stages run (always in this order)
    style_iterations: int = 20_000
    generator_iterations: int = 100_000
    finetune_iterations: int = 50_000
    mapper_iterations: int = 10_000
    # stage 1: style encoder pre-training
    style_lr: float = 1e-3
    style_beta1: float = 0.0
    style_beta2: float = 0.999
    style_batch: int = 12  # triplets (anchors) per step
    style_pool: int = 64  # images whose pairwise style distances are computed together
    pool_every: int = 100  # stage-1 iterations per pool
    positives_from: int = 5  # a positive is one of the anchor's this many nearest
    negatives_from: int = 13  # a negative is one of its this many farthest
    triplet_margin: float = 0.1  # α
    style_code_weight: float = 0.01  # λ, L2 on the codes
    gram_layers: list[str] = field(default_factory=lambda: list(GRAM_LAYERS))
    gram_weights: list[float] = field(default_factory=lambda: [1 / len(GRAM_LAYERS)] * len(GRAM_LAYERS))
    # stages 2 and 3: generator (encoder frozen), then both
    lr: float = 1e-3  # generator and discriminator
    encoder_lr: float = 1e-4  # stage 3
    beta1: float = 0.0
    beta2: float = 0.99
    decay_fraction: float = 0.5  # lr constant, then linear decay over this last fraction of each stage
    gan_weight: float = 1.0
    perceptual_weight: float = 0.02
    perceptual_layers: list[str] = field(default_factory=lambda: list(PERCEPTUAL_LAYERS))
    perceptual_layer_weights: list[float] = field(default_factory=lambda: list(PERCEPTUAL_WEIGHTS))
    code_weight: float = 0.01  # L2 on z
    l1_weight: float = 0.0  # optional ‖Î_B − I_B‖₁ (not in the paper)
    dis_dim: int = 32
    dis_layers: int = 3
    dis_scales: int = 3
    # stage 4: IMLE mapper
    mapper_lr: float = 1e-3
    mapper_batch: int = 64  # codes per step
    mapper_samples: int = 512  # draws of N(0, I) per step
    # VGG16 (stages 1-3)
    vgg_weights: str | None = None  # a file; else the torch cache; else random from vgg_seed
    vgg_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.stages, str):
            self.stages = [s.strip() for s in self.stages.split(",") if s.strip()]

    def check(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"StEP stages are {', '.join(STAGES)}; got {self.stages!r}")
        self.stages = [s for s in STAGES if s in self.stages]
        for name in STAGES:
            if getattr(self, f"{name}_iterations") < 0:
                raise ValueError(f"{name}_iterations must be ≥ 0")
        if self.positives_from < 1 or self.negatives_from < 1:
            raise ValueError("positives_from and negatives_from must be ≥ 1")
        if self.style_pool < self.positives_from + self.negatives_from + 1:
            raise ValueError(
                f"style_pool ({self.style_pool}) must hold an anchor, its {self.positives_from} nearest "
                f"and its {self.negatives_from} farthest images: at least "
                f"{self.positives_from + self.negatives_from + 1}"
            )
        if not 1 <= self.style_batch <= self.style_pool:
            raise ValueError(f"style_batch must be between 1 and style_pool ({self.style_pool})")
        if self.pool_every < 1 or self.mapper_batch < 1 or self.mapper_samples < 1:
            raise ValueError("pool_every, mapper_batch and mapper_samples must be ≥ 1")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        for layers, weights, what in ((self.gram_layers, self.gram_weights, "gram"),
                                      (self.perceptual_layers, self.perceptual_layer_weights, "perceptual")):
            if len(layers) != len(weights) or not layers:
                raise ValueError(f"{what} layers and weights need one weight per layer")

    def iterations(self) -> int:
        """The planned total: the iterations of the chosen stages."""
        return sum(getattr(self, f"{name}_iterations") for name in self.stages)


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # docs/methods.md §4 where it says (optimisers, loss weights, discriminator, triplet rules);
    # the iteration counts are our choice.
    "paper": {},
    # CPU-sized (benchmarks/NOTES.md: what was measured): short stages, smaller triplet pools, a
    # narrow 2-scale discriminator, and pixel L1 instead of the VGG perceptual term, which took
    # three quarters of a step and, with a random-weight VGG16, ~0.1 % of the loss.
    "small": {
        "style_iterations": 300, "generator_iterations": 600, "finetune_iterations": 200,
        "mapper_iterations": 500, "style_pool": 32, "pool_every": 50,
        "perceptual_weight": 0.0, "l1_weight": 10.0,
        "dis_dim": 16, "dis_layers": 3, "dis_scales": 2,
    },
}
