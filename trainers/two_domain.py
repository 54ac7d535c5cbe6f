"""What UNIT and MUNIT training share: two domains, one adversarial update scheme.

A generator model with ``gen_a``/``gen_b``, one multi-scale LSGAN
discriminator per domain, Adam for both sides with the learning rate halved
every ``lr_step`` iterations. One generator forward serves both updates: the
discriminators learn from the detached translations, then the generator is
scored by the updated discriminators on the same translations. A method
supplies the forward (:meth:`translate`) and its generator loss terms.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from engines.blocks.autoencoder import blend_with_source, decoded_image
from engines.blocks.two_domain import gate_built
from trainers.discriminators import MultiScaleDiscriminator
from napari_i2i.contract.trainer_api import MethodSettings, MethodTrainer, ScoringTranslation
from trainers.losses import l1, lsgan_discriminator, lsgan_generator
from trainers.precision import TrainingRuntime

# The CPU-sized optimisation of the `small` presets: narrow discriminators, the
# Adam betas and higher learning rate of later GAN work (benchmarks/NOTES.md: the
# published optimiser and lr 1e-3 both learnt less in the same time).
SMALL_OPTIMISATION: dict[str, Any] = dict(
    lr=4e-4, beta1=0.0, beta2=0.99, dis_dim=16, dis_layers=3, dis_scales=2
)
# The `small` presets of UNIT and MUNIT: that optimisation plus the identity term, which at the
# worst of 3 seeds improved keep_change, stain and digits for both engines (docs/benchmarks.md).
SMALL_TWO_DOMAIN: dict[str, Any] = {**SMALL_OPTIMISATION, "identity_weight": 5.0}


@dataclass
class AdversarialSettings(MethodSettings):
    """Optimiser and discriminator settings; defaults as published for UNIT/MUNIT."""

    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_step: int = 100_000  # halve the learning rate every this many iterations
    gan_weight: float = 1.0
    # CycleGAN's identity term (not in the UNIT/MUNIT papers): an image translated into its own
    # domain stays itself; only between domains of the same channel count
    identity_weight: float = 0.0
    # with the model's input gate: the mean opening of the translations' gates, so the input is
    # kept wherever the adversarial term does not ask for a change
    gate_weight: float = 0.0
    dis_dim: int = 64
    dis_layers: int = 4
    dis_scales: int = 3
    method: ClassVar[str] = "adversarial"


def identity_error(decoder_output: torch.Tensor, image: torch.Tensor, gated: bool) -> torch.Tensor:
    """‖an image translated into its own domain − itself‖₁. With the input gate, that of the blend
    (teaching the gate to close where nothing must change) plus that of the decoder's own image:
    with the gate shut the blend alone would teach the decoder nothing, and a poor decoder is
    what makes the gate shut (benchmarks/NOTES.md, "The input gate")."""
    if not gated:
        return l1(decoder_output, image)
    return l1(blend_with_source(decoder_output, image), image) + l1(decoded_image(decoder_output, image.shape[1]), image)


def displayable(images: torch.Tensor) -> torch.Tensor:
    """RGB for an image grid: gray is repeated, other channel counts show channel 0."""
    return images if images.shape[1] == 3 else images[:, :1].expand(-1, 3, -1, -1)


def real_and_fake(discriminator: nn.Module, real: torch.Tensor,
                  fake: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A discriminator's outputs per scale on real and fake images, from one pass over both: the
    discriminators have no normalisation, so batching them changes no output, and one pass is
    faster than two (benchmarks/NOTES.md, issue 16)."""
    outputs = discriminator(torch.cat([real, fake.to(real.dtype)]))
    return [o[: len(real)] for o in outputs], [o[len(real) :] for o in outputs]


class TwoDomainTrainer(MethodTrainer):
    def __init__(self, model: nn.Module, config: AdversarialSettings, device: torch.device,
                 runtime: TrainingRuntime | None = None) -> None:
        self.model = model.to(device).train()
        self.config = config
        self.device = device
        self.runtime = runtime or TrainingRuntime(device)
        channels = (model.config["channels_a"], model.config["channels_b"])
        self.dis_a, self.dis_b = (
            MultiScaleDiscriminator(c, config.dis_dim, config.dis_layers, config.dis_scales).to(device)
            for c in channels
        )
        adam = dict(lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        # model.parameters() lists blocks tied across domains once: one Adam state each.
        self.gen_optimizer = torch.optim.Adam(self.model.parameters(), **adam)
        dis_parameters = [*self.dis_a.parameters(), *self.dis_b.parameters()]
        self.dis_optimizer = torch.optim.Adam(dis_parameters, **adam)
        self._schedulers = {
            name: torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, gamma=0.5)
            for name, optimizer in self.optimizers().items()
        }
        self.scaler = self.runtime.grad_scaler()  # fp16 only; a pass-through otherwise
        self.runtime.compile_networks(self.model, self.dis_a, self.dis_b)
        self._events: list[dict[str, Any]] = []
        self.identity_term = config.identity_weight > 0 and channels[0] == channels[1]
        if config.identity_weight > 0 and not self.identity_term:  # e.g. gray → RGB: a preset's term, off
            self._events.append({"event": "identity_term_off", "identity_weight": config.identity_weight,
                                 "reason": f"domain a has {channels[0]} channels and b {channels[1]}: an "
                                           "image of one domain cannot go through the other's encoder"})
        if model.config.get("input_gate") and not gate_built(model.config):
            self._events.append({"event": "input_gate_off",
                                 "reason": f"domain a has {channels[0]} channels and b {channels[1]}: a "
                                           "translation cannot be blended with its input"})

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def modules(self) -> Mapping[str, nn.Module]:
        return {"generator": self.model, "dis_a": self.dis_a, "dis_b": self.dis_b}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"generator": self.gen_optimizer, "discriminator": self.dis_optimizer}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self._schedulers

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        return {"grad": self.scaler}

    @abstractmethod
    def translate(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator forward of one step: must hold ``x_ab`` and ``x_ba``,
        plus whatever :meth:`generator_losses` needs again."""

    @abstractmethod
    def generator_losses(
        self, x_a: torch.Tensor, x_b: torch.Tensor, forward: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Loss terms besides the GAN term, and their weights."""

    @abstractmethod
    def translate_for_display(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic a→b and b→a for validation images."""

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], iteration: int) -> dict[str, float]:
        x_a, x_b = (x.to(self.device, non_blocking=True) for x in batch)
        with self.runtime.autocast():
            forward = self.translate(x_a, x_b)
            x_ab, x_ba = forward["x_ab"], forward["x_ba"]
            dis_loss = lsgan_discriminator(*real_and_fake(self.dis_a, x_a, x_ba.detach()))
            dis_loss = dis_loss + lsgan_discriminator(*real_and_fake(self.dis_b, x_b, x_ab.detach()))
        self.dis_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(dis_loss).backward()
        self.scaler.step(self.dis_optimizer)

        for discriminator in (self.dis_a, self.dis_b):
            discriminator.requires_grad_(False)
        with self.runtime.autocast():
            losses, weights = self.generator_losses(x_a, x_b, forward)
            losses["gan"] = lsgan_generator(self.dis_a(x_ba)) + lsgan_generator(self.dis_b(x_ab))
            weights["gan"] = self.config.gan_weight
            if self.config.gate_weight > 0 and forward.get("gate_ab") is not None:
                losses["gate"] = forward["gate_ab"].float().mean() + forward["gate_ba"].float().mean()
                weights["gate"] = self.config.gate_weight
            gen_loss = sum(weights[k] * losses[k] for k in losses)
        self.gen_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(gen_loss).backward()
        self.scaler.step(self.gen_optimizer)
        self.scaler.update()  # once per iteration, after both optimisers
        for discriminator in (self.dis_a, self.dis_b):
            discriminator.requires_grad_(True)
        for scheduler in self._schedulers.values():
            scheduler.step()
        return {
            "dis": dis_loss.item(),
            "gen": gen_loss.item(),
            **{name: value.item() for name, value in losses.items()},
        }

    def translate_back(self, x_ab: torch.Tensor, x_ba: torch.Tensor, x_a: torch.Tensor,
                       x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The display translations taken back to their own domains (``x_aba``, ``x_bab``); the
        inputs are given for methods that decode back in the input's own style."""
        return self.translate_for_display(x_ba, x_ab)[::-1]

    def second_styles(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """a→b and b→a in other sampled styles than the display's (multimodal methods), else None."""
        return None

    @torch.no_grad()
    def scoring_translations(self, batch: tuple[torch.Tensor, torch.Tensor]) -> list[ScoringTranslation]:
        """Both directions of the validation batch, translated back, in eval mode."""
        self.model.eval()
        x_a, x_b = (x.to(self.device) for x in batch)
        with self.runtime.autocast():
            x_ab, x_ba = self.translate_for_display(x_a, x_b)
            x_aba, x_bab = self.translate_back(x_ab, x_ba, x_a, x_b)
            others = self.second_styles(x_a, x_b)
        self.model.train()
        other_ab, other_ba = others if others is not None else (None, None)
        return [ScoringTranslation(x_a, x_ab, x_b, x_aba, other_ab, "a→b"),
                ScoringTranslation(x_b, x_ba, x_a, x_bab, other_ba, "b→a")]

    @torch.no_grad()
    def validation_images(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows: inputs a, a→b, inputs b, b→a."""
        self.model.eval()
        x_a, x_b = (x.to(self.device) for x in batch)
        x_ab, x_ba = self.translate_for_display(x_a, x_b)
        self.model.train()
        return torch.cat([displayable(x) for x in (x_a, x_ab, x_b, x_ba)])
