"""MUNIT training (Huang et al., ECCV 2018; ``shared/METHODS.md`` §2).

Losses: image reconstruction, content and style reconstruction, LSGAN with
multi-scale discriminators, and the style-augmented cycle (example-guided
translation needs it). One generator forward serves both updates: the
discriminator learns from the detached translations, then the generator is
scored by the updated discriminator on the same translations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from engines.munit import MunitModel
from napari_i2i.device import autocast
from trainers.discriminators import MultiScaleDiscriminator
from napari_i2i import hookimpl
from trainers.loop import MethodTrainer, TrainerSpec
from trainers.losses import l1, lsgan_discriminator, lsgan_generator


@dataclass
class MunitTrainConfig:
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_step: int = 100_000  # halve the learning rate every this many iterations
    gan_weight: float = 1.0
    image_weight: float = 10.0
    content_weight: float = 1.0
    style_weight: float = 1.0
    cycle_weight: float = 10.0  # style-augmented cycle
    dis_dim: int = 64
    dis_layers: int = 4
    dis_scales: int = 3

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MunitTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown MUNIT training settings: {sorted(unknown)}")
        return cls(**values)


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: Adam(0.5, 0.999), lr 1e-4, halved every 100k iterations.
    "paper": {},
    # First CPU-sized settings (narrow discriminators, the Adam betas and higher
    # learning rate of later GAN work); their tuning is documented in
    # docs/benchmarks.md once measured.
    "small": dict(lr=4e-4, beta1=0.0, beta2=0.99, dis_dim=16, dis_layers=3, dis_scales=2),
}


def _displayable(images: torch.Tensor) -> torch.Tensor:
    """RGB for an image grid: gray is repeated, other channel counts show channel 0."""
    return images if images.shape[1] == 3 else images[:, :1].expand(-1, 3, -1, -1)


class MunitTrainer(MethodTrainer):
    def __init__(self, model: MunitModel, config: MunitTrainConfig, device: torch.device) -> None:
        self.model = model.to(device).train()
        self.config = config
        self.device = device
        channels = (model.config["channels_a"], model.config["channels_b"])
        self.dis_a, self.dis_b = (
            MultiScaleDiscriminator(c, config.dis_dim, config.dis_layers, config.dis_scales).to(device)
            for c in channels
        )
        adam = dict(lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        self.gen_optimizer = torch.optim.Adam(self.model.parameters(), **adam)
        dis_parameters = [*self.dis_a.parameters(), *self.dis_b.parameters()]
        self.dis_optimizer = torch.optim.Adam(dis_parameters, **adam)
        self._schedulers = {
            name: torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, gamma=0.5)
            for name, optimizer in self.optimizers().items()
        }

    def modules(self) -> Mapping[str, nn.Module]:
        return {"generator": self.model, "dis_a": self.dis_a, "dis_b": self.dis_b}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"generator": self.gen_optimizer, "discriminator": self.dis_optimizer}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self._schedulers

    def _random_styles(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.model.gen_a.style_dim, device=self.device)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], iteration: int) -> dict[str, float]:
        cfg = self.config
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        x_a, x_b = (x.to(self.device, non_blocking=True) for x in batch)
        s_a, s_b = self._random_styles(len(x_a)), self._random_styles(len(x_b))
        with autocast(self.device):
            content_a, style_a = gen_a.encode(x_a)
            content_b, style_b = gen_b.encode(x_b)
            x_ba = gen_a.decode(content_b, s_a)
            x_ab = gen_b.decode(content_a, s_b)

        # Discriminators on the detached translations.
        with autocast(self.device):
            dis_loss = lsgan_discriminator(self.dis_a(x_a), self.dis_a(x_ba.detach()))
            dis_loss = dis_loss + lsgan_discriminator(self.dis_b(x_b), self.dis_b(x_ab.detach()))
        self.dis_optimizer.zero_grad(set_to_none=True)
        dis_loss.backward()
        self.dis_optimizer.step()

        # Generators, scored by the updated discriminators on the same translations.
        for discriminator in (self.dis_a, self.dis_b):
            discriminator.requires_grad_(False)
        with autocast(self.device):
            recon_a = gen_a.decode(content_a, style_a)
            recon_b = gen_b.decode(content_b, style_b)
            content_b_back, s_a_back = gen_a.encode(x_ba)
            content_a_back, s_b_back = gen_b.encode(x_ab)
            losses = {
                "gan": lsgan_generator(self.dis_a(x_ba)) + lsgan_generator(self.dis_b(x_ab)),
                "image": l1(recon_a, x_a) + l1(recon_b, x_b),
                "content": l1(content_a_back, content_a) + l1(content_b_back, content_b),
                "style": l1(s_a_back, s_a) + l1(s_b_back, s_b),
            }
            weights = {
                "gan": cfg.gan_weight,
                "image": cfg.image_weight,
                "content": cfg.content_weight,
                "style": cfg.style_weight,
            }
            if cfg.cycle_weight > 0:
                cycle_a = gen_a.decode(content_a_back, style_a)
                cycle_b = gen_b.decode(content_b_back, style_b)
                losses["cycle"] = l1(cycle_a, x_a) + l1(cycle_b, x_b)
                weights["cycle"] = cfg.cycle_weight
            gen_loss = sum(weights[k] * losses[k] for k in losses)
        self.gen_optimizer.zero_grad(set_to_none=True)
        gen_loss.backward()
        self.gen_optimizer.step()
        for discriminator in (self.dis_a, self.dis_b):
            discriminator.requires_grad_(True)
        for scheduler in self._schedulers.values():
            scheduler.step()
        return {
            "dis": dis_loss.item(),
            "gen": gen_loss.item(),
            **{name: value.item() for name, value in losses.items()},
        }

    @torch.no_grad()
    def validation_images(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows: inputs a, a→b with fixed styles, inputs b, b→a."""
        self.model.eval()
        x_a, x_b = (x.to(self.device) for x in batch)
        styles = torch.randn(len(x_a), self.model.gen_a.style_dim, generator=torch.Generator().manual_seed(0))
        styles = styles.to(self.device)
        x_ab = self.model.gen_b.decode(self.model.gen_a.content_encoder(x_a), styles)
        x_ba = self.model.gen_a.decode(self.model.gen_b.content_encoder(x_b), styles[: len(x_b)])
        self.model.train()
        return torch.cat([_displayable(x) for x in (x_a, x_ab, x_b, x_ba)])


def build_trainer(model: MunitModel, settings: Mapping[str, Any], device: torch.device) -> MunitTrainer:
    return MunitTrainer(model, MunitTrainConfig.from_mapping(settings), device)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(
        TrainerSpec(engine="munit", data="unpaired", presets=TRAIN_PRESETS, build=build_trainer)
    )
