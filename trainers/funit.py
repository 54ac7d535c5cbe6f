"""FUNIT training (Liu et al., ICCV 2019; ``docs/methods.md`` §3).

One generator learns every training class: a content image ``x`` of class
``a`` and a class image ``y`` of class ``b`` (K = 1, as published) give the
translation ``x̄ = G(x, {y})`` and the reconstruction ``x̂ = G(x, {x})``.
Losses: hinge GAN with a multi-task discriminator (one patch-logit channel
per training class; an image is judged by its class's channel), content
reconstruction ``‖x̂ − x‖₁`` (λR 0.1), feature matching of the discriminator
features without its last layer (λF 1) and the R1 penalty on real images
(10). The saved model is an exponential moving average of the generator
(0.999).

Not in the paper (off in ``paper``): the class-mate identity term ``‖G(x, {m}) − x‖₁``
with ``m`` another image of x's class. The published reconstruction takes x's own
class code, so the code may learn that image's own colour balance; at test time the
code comes from other images, and it must carry only what their class shares.

One generator forward serves both updates: the discriminator learns from the
detached translation, then the generator is scored by the updated
discriminator on the same translation and reconstruction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from engines.funit import FunitModel
from napari_i2i import hookimpl
from trainers.discriminators import MultiTaskDiscriminator
from napari_i2i.contract.trainer_api import MethodSettings, MethodTrainer, ScoringTranslation, TrainerSpec
from trainers.losses import hinge_discriminator, hinge_generator, l1, r1_penalty
from trainers.precision import TrainingRuntime
from trainers.two_domain import displayable
from trainers.ema import ema_beta, update_average

OPTIMIZERS = ("rmsprop", "adam")


@dataclass
class FunitTrainConfig(MethodSettings):
    """FUNIT's training settings; the defaults are the published ones."""

    num_classes: int = 0  # training classes = discriminator outputs; set from the data
    optimizer: str = "rmsprop"  # or "adam" (with beta1, beta2)
    lr: float = 1e-4  # generator and discriminator
    weight_decay: float = 1e-4
    beta1: float = 0.0  # Adam only
    beta2: float = 0.99  # Adam only
    gan_weight: float = 1.0
    reconstruction_weight: float = 0.1  # λR: ‖G(x, {x}) − x‖₁
    # Optional warm-up (not in the paper; off by default): λR starts at reconstruction_start and
    # decays linearly to reconstruction_weight over the first reconstruction_warmup iterations.
    reconstruction_start: float = 0.0
    reconstruction_warmup: int = 0
    feature_weight: float = 1.0  # λF: feature matching
    classmate_weight: float = 0.0  # ‖G(x, {m}) − x‖₁, m a class mate of x (not in the paper)
    r1_weight: float = 10.0
    ema_beta: float = 0.999  # the saved generator: an exponential moving average
    ema_warmup: bool = False  # beta min(ema_beta, (1 + t) / (10 + t)): the average follows early training
    dis_dim: int = 64
    dis_blocks: int = 10  # activation-first residual blocks, in pairs
    dis_max_dim: int = 1024
    method: ClassVar[str] = "FUNIT"

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"FUNIT optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if self.reconstruction_warmup < 0 or self.reconstruction_start < 0:
            raise ValueError("reconstruction_warmup and reconstruction_start must be ≥ 0")
        if self.classmate_weight < 0:
            raise ValueError(f"classmate_weight must be ≥ 0, got {self.classmate_weight}")

    def reconstruction_at(self, iteration: int) -> float:
        """λR at *iteration* (0-based): the warm-up's linear decay, then ``reconstruction_weight``."""
        if iteration >= self.reconstruction_warmup:
            return self.reconstruction_weight
        left = 1 - iteration / self.reconstruction_warmup
        return self.reconstruction_weight + (self.reconstruction_start - self.reconstruction_weight) * left


# CPU-sized: narrow discriminator, Adam β=(0, 0.99) at a higher learning rate, an average that
# follows early training, no weight decay (with Adam it zeroed the class encoder) and λR 20 (at 0.1
# the glyphs lost their shapes); see benchmarks/NOTES.md for what was measured.
SMALL: dict[str, Any] = {
    "optimizer": "adam", "lr": 2e-4, "weight_decay": 0.0, "reconstruction_weight": 20.0,
    "ema_warmup": True, "dis_dim": 16, "dis_blocks": 6, "dis_max_dim": 256,
}

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: RMSprop lr 1e-4, weight decay 1e-4, discriminator 64 wide with 10 blocks.
    "paper": {},
    "small": SMALL,
    # `small` with the class-mate term, for classes that differ in colour (stain looks): far ahead
    # of `small` on unseen stain looks, a little behind it on unseen fonts (a change of shape;
    # docs/benchmarks.md, "FUNIT with the class-mate identity term"), hence a preset of its own.
    "small-colour": {**SMALL, "classmate_weight": 20.0},
}


def mean_features(features: torch.Tensor) -> torch.Tensor:
    """Discriminator features averaged over space: ``(N, C)``."""
    return features.float().mean((2, 3))


class FunitTrainer(MethodTrainer):
    """``generator`` is trained; ``model``, its moving average, is what is saved and shown."""

    model: FunitModel

    def __init__(self, model: FunitModel, config: FunitTrainConfig, device: torch.device,
                 runtime: TrainingRuntime | None = None) -> None:
        if config.num_classes < 1:
            raise ValueError(
                "FUNIT training needs num_classes ≥ 1: the number of training classes "
                "(one discriminator output each), normally taken from the data"
            )
        self.config = config
        self.device = device
        self.runtime = runtime or TrainingRuntime(device)
        self.generator = model.to(device).train()
        self.model = copy.deepcopy(self.generator).requires_grad_(False)
        self.dis = MultiTaskDiscriminator(
            model.config["channels"], config.num_classes, config.dis_dim, config.dis_blocks, config.dis_max_dim
        ).to(device)
        self.gen_optimizer = self._optimizer(self.generator.parameters())
        self.dis_optimizer = self._optimizer(self.dis.parameters())
        self.scaler = self.runtime.grad_scaler()  # fp16 only; a pass-through otherwise
        # the pieces the step calls (it calls encoders and decoder, features and logits, not forward);
        # after the copy: the average stays eager
        self.runtime.compile_networks(*self.generator.generator.children(), *self.dis.children())

    def _optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(parameters, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    def modules(self) -> Mapping[str, nn.Module]:
        return {"generator": self.generator, "generator_ema": self.model, "discriminator": self.dis}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"generator": self.gen_optimizer, "discriminator": self.dis_optimizer}

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        return {"grad": self.scaler}

    def ema_beta(self, iteration: int) -> float:
        return ema_beta(self.config.ema_beta, self.config.ema_warmup, iteration)

    def update_average(self, iteration: int) -> None:
        update_average(self.model, self.generator, self.ema_beta(iteration))

    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        """*batch* is ``((x, labels_x), (y, labels_y))``: content images, class images, and a
        third pair, class mates of x, when ``classmate_weight`` > 0."""
        cfg = self.config
        if cfg.classmate_weight > 0 and len(batch) < 3:
            raise ValueError("classmate_weight > 0 needs batches with class mates of the content images "
                             "(the classes data kind serves them)")
        (x, label_x), (y, label_y) = ((t.to(self.device, non_blocking=True) for t in pair) for pair in batch[:2])
        generator = self.generator.generator
        identity = None
        with self.runtime.autocast():
            content = generator.content_encoder(x)
            # x in y's class (blended with x by an input gate), and x re-made in its own class (never
            # blended: a reconstruction that could copy its input would teach the decoder nothing)
            translation = generator.decode(content, generator.class_encoder(y), x)
            reconstruction = generator.decode(content, generator.class_encoder(x))
            if cfg.classmate_weight > 0:  # x through its class mates' code, not blended either: a closed
                # gate would meet the term exactly, and blended it taught the gate to copy every input
                identity = generator.decode(content, generator.class_encoder(batch[2][0].to(self.device)))
        dis_loss, losses = self._discriminator_update(y, label_y, translation)
        gen_loss, gen_losses = self._generator_update((x, label_x), (y, label_y), translation, reconstruction,
                                                      identity, iteration)
        self.update_average(iteration)
        losses.update(gen_losses)
        return {
            "dis": dis_loss.item(),
            "gen": gen_loss.item(),
            **{name: value.item() for name, value in losses.items()},
        }

    def _discriminator_update(self, y: torch.Tensor, label_y: torch.Tensor,
                              translation: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """y real, the translation fake (both judged by y's class), R1 on y."""
        cfg = self.config
        real = y.detach().requires_grad_(cfg.r1_weight > 0)
        with self.runtime.autocast():
            real_logits = self.dis(real, label_y)
            fake_logits = self.dis(translation.detach(), label_y)
            gan_dis = hinge_discriminator(real_logits, fake_logits)
        dis_loss = cfg.gan_weight * gan_dis
        losses = {"gan_dis": gan_dis.detach()}
        if cfg.r1_weight > 0:
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            losses["r1"] = r1_penalty(real_logits, real, scale)
            dis_loss = dis_loss + cfg.r1_weight * losses["r1"]
        self.dis_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(dis_loss).backward()
        self.scaler.step(self.dis_optimizer)
        return dis_loss, losses

    def _generator_update(self, content: tuple[torch.Tensor, torch.Tensor], style: tuple[torch.Tensor, torch.Tensor],
                          translation: torch.Tensor, reconstruction: torch.Tensor, identity: torch.Tensor | None,
                          iteration: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scored by the updated discriminator: hinge GAN, feature matching, reconstruction (and the
        class-mate identity term)."""
        cfg = self.config
        (x, label_x), (y, label_y) = content, style
        self.dis.requires_grad_(False)
        with self.runtime.autocast():
            features_t = self.dis.features(translation)
            features_r = self.dis.features(reconstruction)
            gan = 0.5 * (
                hinge_generator(self.dis.logits(features_t, label_y))
                + hinge_generator(self.dis.logits(features_r, label_x))
            )
            with torch.no_grad():  # targets: the real images' features (K = 1: the mean is the one)
                target_y, target_x = mean_features(self.dis.features(y)), mean_features(self.dis.features(x))
            feature = l1(mean_features(features_t), target_y) + l1(mean_features(features_r), target_x)
            reconstruction_loss = l1(reconstruction, x)
            gen_loss = (
                cfg.gan_weight * gan + cfg.reconstruction_at(iteration) * reconstruction_loss
                + cfg.feature_weight * feature
            )
            terms = {"gan": gan, "reconstruction": reconstruction_loss, "feature": feature}
            if identity is not None:
                terms["classmate"] = l1(identity, x)
                gen_loss = gen_loss + cfg.classmate_weight * terms["classmate"]
        self.gen_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(gen_loss).backward()
        self.scaler.step(self.gen_optimizer)
        self.scaler.update()  # once per iteration, after both optimisers
        self.dis.requires_grad_(True)
        return gen_loss, terms

    @torch.no_grad()
    def validation_images(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows: content images, class examples, translations, reconstructions (by the average)."""
        [scored] = self.scoring_translations(batch)
        rows = (scored.source, scored.target_examples, scored.translated, scored.reconstructed)
        return torch.cat([displayable(t.float()) for t in rows])

    @torch.no_grad()
    def scoring_translations(self, batch: tuple[torch.Tensor, torch.Tensor]) -> list[ScoringTranslation]:
        """Content images in their examples' classes, and re-made in their own (by the average)."""
        x, y = (t.to(self.device) for t in batch)
        average = self.model.generator
        with self.runtime.autocast():
            content = average.content_encoder(x)
            translation = average.decode(content, average.class_encoder(y), x)
            reconstruction = average.decode(content, average.class_encoder(x))
        return [ScoringTranslation(x, translation.float(), y, reconstruction.float(), direction="content→class")]


def build_trainer(model: FunitModel, settings: Mapping[str, Any], device: torch.device,
                  runtime: TrainingRuntime | None = None) -> FunitTrainer:
    return FunitTrainer(model, FunitTrainConfig.from_mapping(settings), device, runtime)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(TrainerSpec(engine="funit", data="classes", presets=TRAIN_PRESETS, build=build_trainer))
