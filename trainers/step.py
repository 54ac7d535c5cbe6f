"""StEP training (Meshry et al., CVPR 2021; ``docs/methods.md`` §4): four stages.

1. ``style`` — the style encoder alone, by triplets: the style distance of two
   images is the Gram-matrix style loss over VGG16 features; for an anchor, a
   positive is drawn among its ``positives_from`` (5) nearest images of a pool
   and a negative among its ``negatives_from`` (13) farthest; loss
   ``max(‖z_a − z_p‖² − ‖z_a − z_n‖² + α, 0) + λ·L2(z)`` (α 0.1, λ 0.01).
2. ``generator`` — ``Î_B = G(I_A, z)``, ``z = E(I_B)`` with the encoder frozen:
   LSGAN with a multi-scale PatchGAN discriminator on (input, output) pairs,
   VGG perceptual reconstruction (0.02) and L2 on ``z`` (0.01).
3. ``finetune`` — the same losses, generator and encoder trained together
   (encoder learning rate 1e-4).
4. ``mapper`` — IMLE: the codes ``z_i`` of the training B images; samples
   ``r_j ~ N(0, I)`` are mapped to ``M(r_j)``, each ``z_i`` is paired with its
   nearest ``M(r_j)`` and their distance minimised, so that styles can be
   sampled without a reference.

One :class:`StepTrainer` runs the stages in turn inside the shared training
loop: each stage has its own iteration count, the loop's iteration says which
stage runs (the last chosen stage takes any iterations past the planned
total), and the checkpoint holds the stage, the iterations done in each and
the current triplet pool, so every stage resumes exactly. Stages 1 and 4 draw
their images from the training set itself (:meth:`StepTrainer.attach_dataset`,
called by ``trainers.run.train``); stages 2 and 3 use the loop's batches of
aligned pairs.

VGG16 weights come from a file (``vgg_weights``) or the torch cache; without
either a VGG16 randomly initialised from ``vgg_seed`` is used (random-filter
Gram statistics still describe texture). ``log.jsonl`` (event ``vgg``) and
the model file's provenance say which.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from engines.step import StepModel
from napari_i2i import hookimpl
from napari_i2i.core.device import autocast
from trainers.discriminators import MultiScaleDiscriminator
from napari_i2i.contract.trainer_api import MethodSettings, MethodTrainer, TrainerSpec
from trainers.loop import make_grad_scaler
from trainers.losses import l1, lsgan_discriminator, lsgan_generator
from trainers.two_domain import displayable
from trainers.vgg import Vgg16Features, load_vgg16

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
    # CPU-sized (docs/training.md: what was measured): short stages, smaller triplet pools, a
    # narrow 2-scale discriminator, and pixel L1 instead of the VGG perceptual term, which took
    # three quarters of a step and, with a random-weight VGG16, ~0.1 % of the loss.
    "small": {
        "style_iterations": 300, "generator_iterations": 600, "finetune_iterations": 200,
        "mapper_iterations": 500, "style_pool": 32, "pool_every": 50,
        "perceptual_weight": 0.0, "l1_weight": 10.0,
        "dis_dim": 16, "dis_layers": 3, "dis_scales": 2,
    },
}


# --- pure pieces: Gram style distance, triplets, IMLE --------------------------------------


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


def lr_factor(local: int, length: int, decay_fraction: float) -> float:
    """Constant, then linear decay over the last ``decay_fraction`` of a stage of ``length``
    iterations (reaching ``1/decay_length`` at its last iteration and staying there)."""
    decay = round(decay_fraction * length)
    if decay < 1 or local < length - decay:
        return 1.0
    return max(length - local, 1) / decay


# --- the trainer ---------------------------------------------------------------------------


class _StageState(nn.Module):
    """What a checkpoint must hold besides the networks: stage, iterations per stage, triplet pool,
    and the trainer's own random generator (pools, triplets, IMLE draws)."""

    def __init__(self, pool: int, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("rng", generator.get_state())
        self.register_buffer("stage", torch.tensor(-1))  # index in STAGES of the last step, −1: none yet
        self.register_buffer("done", torch.zeros(len(STAGES), dtype=torch.int64))
        self.register_buffer("pool_id", torch.tensor(-1))
        self.register_buffer("pool_indices", torch.zeros(pool, dtype=torch.int64))
        self.register_buffer("pool_distances", torch.zeros(pool, pool))


class StepTrainer(MethodTrainer):
    """Runs the chosen stages in order; ``model`` (encoder, generator, mapper) is what is saved."""

    model: StepModel

    def __init__(self, model: StepModel, config: StepTrainConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.model = model.to(device).train()
        self.schedule = [(name, getattr(config, f"{name}_iterations")) for name in config.stages]
        cfg, c = config, model.config
        self.dis = MultiScaleDiscriminator(c["channels_a"] + c["channels_b"], cfg.dis_dim, cfg.dis_layers,
                                           cfg.dis_scales).to(device)
        # The trainer's own random stream, seeded from the global one (run.train seeds that) and
        # kept in the checkpoint: draws elsewhere (a DataLoader starting) cannot shift it.
        self.rng = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.state = _StageState(cfg.style_pool, self.rng).to(device)
        self.state.register_load_state_dict_post_hook(lambda module, keys: self._restore())
        encoder, generator = model.style_encoder, model.generator
        self._optimizers = {
            "style": torch.optim.Adam(encoder.parameters(), cfg.style_lr, betas=(cfg.style_beta1, cfg.style_beta2)),
            "generator": torch.optim.Adam(generator.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)),
            "discriminator": torch.optim.Adam(self.dis.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2)),
            "encoder": torch.optim.Adam(encoder.parameters(), cfg.encoder_lr, betas=(cfg.beta1, cfg.beta2)),
            "mapper": torch.optim.Adam(model.mapper.parameters(), cfg.mapper_lr),
        }
        self.scaler = make_grad_scaler(device)  # fp16 on CUDA only; a pass-through otherwise
        self.dataset: Any = None
        self._pool_images: torch.Tensor | None = None
        self._codes: torch.Tensor | None = None
        self._events: list[dict[str, Any]] = [{
            "event": "stages",
            "schedule": [{"stage": name, "iterations": n} for name, n in self.schedule],
        }]
        self.vgg: Vgg16Features | None = None
        self.vgg_source: str | None = None
        if "style" in config.stages or (config.perceptual_weight > 0 and {"generator", "finetune"} & set(config.stages)):
            self._load_vgg()

    def _load_vgg(self) -> None:
        cfg = self.config
        channels_b = self.model.config["channels_b"]
        self.vgg, self.vgg_source = load_vgg16(cfg.vgg_weights, self.device, fallback_seed=cfg.vgg_seed)
        perceptual = {"generator", "finetune"} if cfg.perceptual_weight > 0 else set()
        used_for = [use for use, stages in (("gram style distance", {"style"}), ("perceptual loss", perceptual))
                    if stages & set(cfg.stages)]
        event = {"event": "vgg", "source": self.vgg_source, "used_for": used_for}
        if channels_b not in (1, 3):
            event["channels"] = f"{channels_b} channels of B, each seen as a gray image"
        if self.vgg_source.startswith("random:"):
            message = (
                f"no VGG16 weights (vgg_weights not set, none in the torch cache): StEP uses a VGG16 "
                f"randomly initialised with seed {cfg.vgg_seed} for its {' and '.join(used_for)}"
            )
            warnings.warn(message, stacklevel=3)
            event["note"] = message
        self._events.append(event)

    # --- MethodTrainer -----------------------------------------------------------

    def modules(self) -> Mapping[str, nn.Module]:
        return {"model": self.model, "discriminator": self.dis, "state": self.state}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self._optimizers

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        return {"grad": self.scaler}

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def attach_dataset(self, dataset: Any) -> None:
        """The training pairs (items ``(x_a, x_b)``, any index ≥ 0), for the triplet pools of
        stage 1 and the codes of stage 4; ``trainers.run.train`` calls this."""
        self.dataset = dataset
        self._pool_images = self._codes = None

    def provenance(self) -> dict[str, Any]:
        """For the model file: the VGG16 used and the iterations each stage ran."""
        done = self.state.done.tolist()
        return {
            "name": "StEP",
            "vgg": {"source": self.vgg_source} if self.vgg_source else None,
            "stages": {name: {"planned": n, "done": done[STAGES.index(name)]} for name, n in self.schedule},
            "mapper_trained": bool(self.model.config["mapper_trained"]),
        }

    def stage_at(self, iteration: int) -> tuple[str, int, int]:
        """``(stage, iteration within it, its planned length)``; past the plan, the last stage goes on."""
        start = 0
        for name, length in self.schedule:
            if iteration < start + length:
                return name, iteration - start, length
            start += length
        name, length = self.schedule[-1]
        return name, iteration - (start - length), length

    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        stage, local, length = self.stage_at(iteration)
        index = STAGES.index(stage)
        if index < int(self.state.stage):
            raise RuntimeError(
                f"iteration {iteration} falls in stage {stage!r}, but the checkpoint is at stage "
                f"{STAGES[int(self.state.stage)]!r}: the stages or their iteration counts changed"
            )
        if stage == "style":
            losses = self._style_step(local)
        elif stage == "mapper":
            losses = self._mapper_step()
        else:
            losses = self._generator_step(batch, stage == "finetune", lr_factor(local, length, self.config.decay_fraction))
        self.state.stage.fill_(index)
        self.state.done[index] += 1
        self.state.rng.copy_(self.rng.get_state())
        return {"stage": float(index + 1), **losses}

    # --- stage 1 -------------------------------------------------------------------

    def _need_dataset(self, what: str) -> Any:
        if self.dataset is None:
            raise RuntimeError(f"StEP stage {what!r} draws images from the training set: call attach_dataset()")
        return self.dataset

    def _pool(self, local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The pool of this stage-1 iteration: B images and their pairwise style distances."""
        dataset = self._need_dataset("style")
        cfg, state = self.config, self.state
        pool_id = local // cfg.pool_every
        if int(state.pool_id) != pool_id:  # a new pool: images drawn with the run's RNG, fresh crops
            count = len(dataset)
            rounds = -(-cfg.style_pool // count)
            images = torch.cat([torch.randperm(count, generator=self.rng) for _ in range(rounds)])[: cfg.style_pool]
            indices = images + count * torch.randint(0, 2**20, (cfg.style_pool,), generator=self.rng)
            self._pool_images = self._load_b(indices)
            distances = gram_style_distances(self.vgg, self._pool_images, cfg.gram_layers, cfg.gram_weights)
            state.pool_indices.copy_(indices)
            state.pool_distances.copy_(distances)
            state.pool_id.fill_(pool_id)
        elif self._pool_images is None:  # resumed in the middle of a pool: the same images again
            self._pool_images = self._load_b(state.pool_indices.cpu())
        return self._pool_images, state.pool_distances

    def _load_b(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.dataset[int(i)][1] for i in indices]).to(self.device)

    def _style_step(self, local: int) -> dict[str, float]:
        cfg = self.config
        encoder = self.model.style_encoder.train().requires_grad_(True)
        images, distances = self._pool(local)
        anchors = torch.randperm(len(images), generator=self.rng)[: cfg.style_batch]
        positives, negatives = select_triplets(distances.cpu(), anchors, cfg.positives_from, cfg.negatives_from,
                                               self.rng)
        chosen = torch.cat([anchors, positives, negatives]).to(self.device)
        with autocast(self.device):
            codes = encoder(images[chosen]).float()
            z_a, z_p, z_n = codes.split(len(anchors))
            triplet = triplet_loss(z_a, z_p, z_n, cfg.triplet_margin)
            l2 = code_l2(codes)
            loss = triplet + cfg.style_code_weight * l2
        optimizer = self._optimizers["style"]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        with torch.no_grad():  # how often the triplet order is already right
            satisfied = ((z_a - z_p).square().sum(1) < (z_a - z_n).square().sum(1)).float().mean()
        return {"style": loss.item(), "triplet": triplet.item(), "code_l2": l2.item(),
                "triplets_ordered": satisfied.item()}

    # --- stages 2 and 3 -----------------------------------------------------------

    def perceptual(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``Σ_l w_l ‖φ_l(output) − φ_l(target)‖₁``; the target's features carry no gradient."""
        cfg = self.config
        features = self.vgg(vgg_view(output), cfg.perceptual_layers)
        with torch.no_grad():
            targets = self.vgg(vgg_view(target), cfg.perceptual_layers)
        return sum(w * l1(f, t) for w, f, t in zip(cfg.perceptual_layer_weights, features, targets))

    def _generator_step(self, batch: Any, finetune: bool, factor: float) -> dict[str, float]:
        cfg = self.config
        x_a, x_b = (x.to(self.device, non_blocking=True) for x in batch)
        encoder, generator = self.model.style_encoder, self.model.generator.train()
        encoder.train(finetune).requires_grad_(finetune)  # frozen in stage 2
        trained = ["generator", "encoder"] if finetune else ["generator"]
        for name in (*trained, "discriminator"):
            group_lr = cfg.encoder_lr if name == "encoder" else cfg.lr
            for group in self._optimizers[name].param_groups:
                group["lr"] = group_lr * factor
        with autocast(self.device):
            codes = encoder(x_b)
            output = generator(x_a, codes)
            dis_loss = lsgan_discriminator(self.dis(torch.cat([x_a, x_b], 1)),
                                           self.dis(torch.cat([x_a, output.detach()], 1)))
        dis_optimizer = self._optimizers["discriminator"]
        dis_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(dis_loss).backward()
        self.scaler.step(dis_optimizer)

        self.dis.requires_grad_(False)
        with autocast(self.device):
            losses = {"gan": lsgan_generator(self.dis(torch.cat([x_a, output], 1))), "code_l2": code_l2(codes)}
            weights = {"gan": cfg.gan_weight, "code_l2": cfg.code_weight}
            if cfg.perceptual_weight > 0:
                losses["perceptual"], weights["perceptual"] = self.perceptual(output, x_b), cfg.perceptual_weight
            if cfg.l1_weight > 0:
                losses["l1"], weights["l1"] = l1(output, x_b), cfg.l1_weight
            gen_loss = sum(weights[k] * losses[k] for k in losses)
        for name in trained:
            self._optimizers[name].zero_grad(set_to_none=True)
        self.scaler.scale(gen_loss).backward()
        for name in trained:
            self.scaler.step(self._optimizers[name])
        self.scaler.update()  # once per iteration, after every optimiser
        self.dis.requires_grad_(True)
        return {"dis": dis_loss.item(), "gen": gen_loss.item(), "lr_factor": factor,
                **{k: v.item() for k, v in losses.items()}}

    # --- stage 4 -------------------------------------------------------------------

    @torch.no_grad()
    def training_codes(self, batch_size: int = 32) -> torch.Tensor:
        """``(N, style_dim)``: the codes of the training set's B images (one crop each)."""
        dataset = self._need_dataset("mapper")
        encoder = self.model.style_encoder.eval()
        codes = []
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i][1] for i in range(start, min(start + batch_size, len(dataset)))])
            codes.append(encoder(images.to(self.device)).float())
        return torch.cat(codes)

    def _mapper_step(self) -> dict[str, float]:
        cfg = self.config
        self.model.style_encoder.eval().requires_grad_(False)
        if self._codes is None:  # the encoder no longer changes: once per session
            self._codes = self.training_codes()
        codes = self._codes
        if len(codes) > cfg.mapper_batch:
            codes = codes[torch.randperm(len(codes), generator=self.rng)[: cfg.mapper_batch].to(codes.device)]
        mapper = self.model.mapper.train()
        noise = torch.randn(cfg.mapper_samples, self.model.style_dim, generator=self.rng).to(self.device)
        loss, nearest = imle_loss(codes, mapper(noise))
        optimizer = self._optimizers["mapper"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.model.config["mapper_trained"] = 1
        return {"imle": loss.item(), "samples_used": float(nearest.unique().numel())}

    def _restore(self) -> None:
        """After a checkpoint is loaded: the random stream goes on where it was, and the model can
        sample styles once the mapper stage ran."""
        self.rng.set_state(self.state.rng.cpu())
        if int(self.state.done[STAGES.index("mapper")]) > 0:
            self.model.config["mapper_trained"] = 1

    # --- validation ----------------------------------------------------------------

    @torch.no_grad()
    def validation_images(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows: inputs A, targets B, A→B in its own target's style, A→B in the next pair's style
        (and, once the mapper is fitted, A→B in a sampled style)."""
        x_a, x_b = (x.to(self.device) for x in batch)
        model = self.model
        was_training = model.training
        model.eval()
        with autocast(self.device):
            codes = model.style_encoder(x_b).float()
            rows = [x_a, x_b, model.generator(x_a, codes), model.generator(x_a, codes.roll(1, 0))]
            if model.config["mapper_trained"]:
                rows.append(model.generator(x_a, model.sample_styles(len(x_a), seed=0)))
        model.train(was_training)
        return torch.cat([displayable(row.float()) for row in rows])


def build_trainer(model: StepModel, settings: Mapping[str, Any], device: torch.device) -> StepTrainer:
    return StepTrainer(model, StepTrainConfig.from_mapping(settings), device)


def planned_iterations(settings: Mapping[str, Any]) -> int:
    """The loop's iterations for these training settings: the chosen stages' counts added up."""
    return StepTrainConfig.from_mapping(settings).iterations()


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(TrainerSpec(engine="step", data="paired", presets=TRAIN_PRESETS,
                                     build=build_trainer, total_iterations=planned_iterations))
