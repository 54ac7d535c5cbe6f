"""StEP's four training stages, one class each: its optimisers, its learning-rate schedule and its step.

Every stage works on a shared :class:`StageContext` (the model, the
discriminator, the checkpointed :class:`StageState`, the trainer's random
stream, the gradient scaler, the precision, the VGG16 and the training set); the trainer
(``trainers.step.trainer``) says which stage owns an iteration and asks it
for the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from engines.step import StepModel
from trainers.discriminators import MultiScaleDiscriminator
from trainers.losses import l1, lsgan_discriminator, lsgan_generator
from trainers.precision import TrainingRuntime
from trainers.step.settings import STAGES, StepTrainConfig
from trainers.step.style_metric import (
    code_l2,
    gram_style_distances,
    imle_loss,
    select_triplets,
    triplet_loss,
    vgg_view,
)
from trainers.vgg import Vgg16Features


def lr_factor(local: int, length: int, decay_fraction: float) -> float:
    """Constant, then linear decay over the last ``decay_fraction`` of a stage of ``length``
    iterations (reaching ``1/decay_length`` at its last iteration and staying there)."""
    decay = round(decay_fraction * length)
    if decay < 1 or local < length - decay:
        return 1.0
    return max(length - local, 1) / decay


class StageState(nn.Module):
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


@dataclass
class StageContext:
    """What the stages share; ``vgg`` and ``dataset`` are set once known."""

    config: StepTrainConfig
    model: StepModel
    discriminator: MultiScaleDiscriminator
    state: StageState
    rng: torch.Generator
    scaler: torch.amp.GradScaler
    device: torch.device
    runtime: TrainingRuntime  # autocast to the run's precision
    vgg: Vgg16Features | None = None
    dataset: Any = None

    def need_dataset(self, stage: str) -> Any:
        if self.dataset is None:
            raise RuntimeError(f"StEP stage {stage!r} draws images from the training set: call attach_dataset()")
        return self.dataset

    def images_b(self, indices: torch.Tensor) -> torch.Tensor:
        """The B images of these training-set indices, on the device."""
        return torch.stack([self.dataset[int(i)][1] for i in indices]).to(self.device)


class Stage:
    """One stage: the optimisers it brings to the checkpoint and one update step."""

    name: ClassVar[str]

    def __init__(self, context: StageContext) -> None:
        self.context = context

    @property
    def index(self) -> int:
        """Its place in ``STAGES`` (the checkpoint's ``state.stage`` and ``state.done`` count by it)."""
        return STAGES.index(self.name)

    def vgg_use(self) -> str | None:
        """What it needs VGG16 for (the training log says), or None."""
        return None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers this stage brings, by their checkpoint key."""
        return {}

    def attach_dataset(self) -> None:
        """The training set changed: forget what was drawn from the earlier one."""

    def step(self, batch: Any, local: int, length: int) -> dict[str, float]:
        """One update at iteration ``local`` of the stage's ``length``; the loss terms for the log."""
        raise NotImplementedError


class StyleStage(Stage):
    """Stage 1: the style encoder alone, by triplets of a pool of B images drawn from the training set."""

    name = "style"

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        cfg = context.config
        self.optimizer = torch.optim.Adam(context.model.style_encoder.parameters(), cfg.style_lr,
                                          betas=(cfg.style_beta1, cfg.style_beta2))
        self._pool_images: torch.Tensor | None = None

    def vgg_use(self) -> str | None:
        return "gram style distance"

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"style": self.optimizer}

    def attach_dataset(self) -> None:
        self._pool_images = None

    def pool(self, local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The pool of this stage-1 iteration: B images and their pairwise style distances."""
        context = self.context
        dataset = context.need_dataset(self.name)
        cfg, state, rng = context.config, context.state, context.rng
        pool_id = local // cfg.pool_every
        if int(state.pool_id) != pool_id:  # a new pool: images drawn with the run's RNG, fresh crops
            count = len(dataset)
            rounds = -(-cfg.style_pool // count)
            images = torch.cat([torch.randperm(count, generator=rng) for _ in range(rounds)])[: cfg.style_pool]
            indices = images + count * torch.randint(0, 2**20, (cfg.style_pool,), generator=rng)
            self._pool_images = context.images_b(indices)
            distances = gram_style_distances(context.vgg, self._pool_images, cfg.gram_layers, cfg.gram_weights)
            state.pool_indices.copy_(indices)
            state.pool_distances.copy_(distances)
            state.pool_id.fill_(pool_id)
        elif self._pool_images is None:  # resumed in the middle of a pool: the same images again
            self._pool_images = context.images_b(state.pool_indices.cpu())
        return self._pool_images, state.pool_distances

    def step(self, batch: Any, local: int, length: int) -> dict[str, float]:
        context = self.context
        cfg, rng, scaler = context.config, context.rng, context.scaler
        encoder = context.model.style_encoder.train().requires_grad_(True)
        images, distances = self.pool(local)
        anchors = torch.randperm(len(images), generator=rng)[: cfg.style_batch]
        positives, negatives = select_triplets(distances.cpu(), anchors, cfg.positives_from, cfg.negatives_from, rng)
        chosen = torch.cat([anchors, positives, negatives]).to(context.device)
        with context.runtime.autocast():
            codes = encoder(images[chosen]).float()
            z_a, z_p, z_n = codes.split(len(anchors))
            triplet = triplet_loss(z_a, z_p, z_n, cfg.triplet_margin)
            l2 = code_l2(codes)
            loss = triplet + cfg.style_code_weight * l2
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(self.optimizer)
        scaler.update()
        with torch.no_grad():  # how often the triplet order is already right
            satisfied = ((z_a - z_p).square().sum(1) < (z_a - z_n).square().sum(1)).float().mean()
        return {"style": loss.item(), "triplet": triplet.item(), "code_l2": l2.item(),
                "triplets_ordered": satisfied.item()}


class GeneratorStage(Stage):
    """Stage 2: ``Î_B = G(I_A, z)``, ``z = E(I_B)`` with the encoder frozen, on the loop's aligned pairs:
    LSGAN on (input, output) pairs, perceptual (or L1) reconstruction, L2 on ``z``."""

    name = "generator"
    trains_encoder = False

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        cfg = context.config
        betas = (cfg.beta1, cfg.beta2)
        self.generator_optimizer = torch.optim.Adam(context.model.generator.parameters(), cfg.lr, betas=betas)
        self.dis_optimizer = torch.optim.Adam(context.discriminator.parameters(), cfg.lr, betas=betas)

    def vgg_use(self) -> str | None:
        return "perceptual loss" if self.context.config.perceptual_weight > 0 else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.generator_optimizer, "discriminator": self.dis_optimizer}

    def trained(self) -> list[tuple[torch.optim.Optimizer, float]]:
        """The optimisers of the generator's loss, with their base learning rates."""
        return [(self.generator_optimizer, self.context.config.lr)]

    def perceptual(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``Σ_l w_l ‖φ_l(output) − φ_l(target)‖₁``; the target's features carry no gradient."""
        cfg, vgg = self.context.config, self.context.vgg
        features = vgg(vgg_view(output), cfg.perceptual_layers)
        with torch.no_grad():
            targets = vgg(vgg_view(target), cfg.perceptual_layers)
        return sum(w * l1(f, t) for w, f, t in zip(cfg.perceptual_layer_weights, features, targets))

    def step(self, batch: Any, local: int, length: int) -> dict[str, float]:
        context = self.context
        x_a, x_b = (x.to(context.device, non_blocking=True) for x in batch)
        model, dis, scaler = context.model, context.discriminator, context.scaler
        model.style_encoder.train(self.trains_encoder).requires_grad_(self.trains_encoder)
        generator = model.generator.train()
        factor = lr_factor(local, length, context.config.decay_fraction)
        for optimizer, base_lr in (*self.trained(), (self.dis_optimizer, context.config.lr)):
            for group in optimizer.param_groups:
                group["lr"] = base_lr * factor
        with context.runtime.autocast():
            codes = model.style_encoder(x_b)
            output = generator(x_a, codes)
            dis_loss = lsgan_discriminator(dis(torch.cat([x_a, x_b], 1)), dis(torch.cat([x_a, output.detach()], 1)))
        self.dis_optimizer.zero_grad(set_to_none=True)
        scaler.scale(dis_loss).backward()
        scaler.step(self.dis_optimizer)

        dis.requires_grad_(False)
        with context.runtime.autocast():
            losses = self.generator_losses(x_a, x_b, codes, output)
        gen_loss = losses.pop("gen")
        optimizers = [optimizer for optimizer, _ in self.trained()]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(gen_loss).backward()
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()  # once per iteration, after every optimiser
        dis.requires_grad_(True)
        return {"dis": dis_loss.item(), "gen": gen_loss.item(), "lr_factor": factor,
                **{k: v.item() for k, v in losses.items()}}

    def generator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, codes: torch.Tensor,
                         output: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator's loss terms, and under ``gen`` their weighted sum."""
        cfg, dis = self.context.config, self.context.discriminator
        losses = {"gan": lsgan_generator(dis(torch.cat([x_a, output], 1))), "code_l2": code_l2(codes)}
        weights = {"gan": cfg.gan_weight, "code_l2": cfg.code_weight}
        if cfg.perceptual_weight > 0:
            losses["perceptual"], weights["perceptual"] = self.perceptual(output, x_b), cfg.perceptual_weight
        if cfg.l1_weight > 0:
            losses["l1"], weights["l1"] = l1(output, x_b), cfg.l1_weight
        return {**losses, "gen": sum(weights[k] * losses[k] for k in losses)}


class FinetuneStage(GeneratorStage):
    """Stage 3: stage 2's losses, generator and encoder trained together. The generator's and the
    discriminator's optimisers are stage 2's: their Adam state goes on."""

    name = "finetune"
    trains_encoder = True

    def __init__(self, context: StageContext, generator_stage: GeneratorStage) -> None:
        Stage.__init__(self, context)
        cfg = context.config
        self.generator_optimizer = generator_stage.generator_optimizer
        self.dis_optimizer = generator_stage.dis_optimizer
        self.encoder_optimizer = torch.optim.Adam(context.model.style_encoder.parameters(), cfg.encoder_lr,
                                                  betas=(cfg.beta1, cfg.beta2))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": self.encoder_optimizer}

    def trained(self) -> list[tuple[torch.optim.Optimizer, float]]:
        return [*super().trained(), (self.encoder_optimizer, self.context.config.encoder_lr)]


class MapperStage(Stage):
    """Stage 4: IMLE — each code of the training B images paired with its nearest mapped noise sample,
    their distance minimised; afterwards the model offers sampled styles."""

    name = "mapper"

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.optimizer = torch.optim.Adam(context.model.mapper.parameters(), context.config.mapper_lr)
        self._codes: torch.Tensor | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"mapper": self.optimizer}

    def attach_dataset(self) -> None:
        self._codes = None

    @torch.no_grad()
    def training_codes(self, batch_size: int = 32) -> torch.Tensor:
        """``(N, style_dim)``: the codes of the training set's B images (one crop each)."""
        context = self.context
        dataset = context.need_dataset(self.name)
        encoder = context.model.style_encoder.eval()
        codes = []
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i][1] for i in range(start, min(start + batch_size, len(dataset)))])
            codes.append(encoder(images.to(context.device)).float())
        return torch.cat(codes)

    def step(self, batch: Any, local: int, length: int) -> dict[str, float]:
        context = self.context
        cfg, model, rng = context.config, context.model, context.rng
        model.style_encoder.eval().requires_grad_(False)
        if self._codes is None:  # the encoder no longer changes: once per session
            self._codes = self.training_codes()
        codes = self._codes
        if len(codes) > cfg.mapper_batch:
            codes = codes[torch.randperm(len(codes), generator=rng)[: cfg.mapper_batch].to(codes.device)]
        mapper = model.mapper.train()
        noise = torch.randn(cfg.mapper_samples, model.style_dim, generator=rng).to(context.device)
        loss, nearest = imle_loss(codes, mapper(noise))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        model.mark_mapper_trained()
        return {"imle": loss.item(), "samples_used": float(nearest.unique().numel())}
