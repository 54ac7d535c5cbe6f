"""UNIT training (Liu, Breuel & Kautz, NIPS 2017; ``shared/METHODS.md`` §1).

Per domain a VAE with the "reduced" posterior ``z = h + ε`` (KL term
``mean(h²)``), an LSGAN with multi-scale discriminators on the translations
``x_ab = G_b(z_a)``, ``x_ba = G_a(z_b)``, and cycle consistency through the
shared latent space: ``x_a → z_a → x_ab → h_ab → z = h_ab + ε → G_a ≈ x_a``
(with its own KL term on ``h_ab``), and the same for ``b``.

One generator forward serves both updates: the discriminators learn from the
detached translations, then the generator is scored by the updated
discriminators on the same translations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from engines.unit import UnitModel
from engines.unit.networks import sample_latent
from napari_i2i import hookimpl
from napari_i2i.device import autocast
from trainers.discriminators import MultiScaleDiscriminator
from trainers.loop import MethodTrainer, TrainerSpec
from trainers.losses import l1, lsgan_discriminator, lsgan_generator


@dataclass
class UnitTrainConfig:
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_step: int = 100_000  # halve the learning rate every this many iterations
    gan_weight: float = 1.0
    image_weight: float = 10.0
    kl_weight: float = 0.01
    cycle_weight: float = 10.0
    cycle_kl_weight: float = 0.01
    dis_dim: int = 64
    dis_layers: int = 4
    dis_scales: int = 3

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> UnitTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown UNIT training settings: {sorted(unknown)}")
        return cls(**values)


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: Adam(0.5, 0.999), lr 1e-4, weight decay 1e-4, halved every
    # 100k iterations; loss weights of the public default configuration.
    "paper": {},
    # The CPU-sized settings of MUNIT's small preset (narrow discriminators, the
    # Adam betas and higher learning rate of later GAN work). Not yet tuned for
    # UNIT: see docs/benchmarks.md once measured.
    "small": dict(lr=4e-4, beta1=0.0, beta2=0.99, dis_dim=16, dis_layers=3, dis_scales=2),
}


def _displayable(images: torch.Tensor) -> torch.Tensor:
    """RGB for an image grid: gray is repeated, other channel counts show channel 0."""
    return images if images.shape[1] == 3 else images[:, :1].expand(-1, 3, -1, -1)


def kl(h: torch.Tensor) -> torch.Tensor:
    """KL of ``N(h, I)`` to ``N(0, I)`` up to a constant and scale: ``mean(h²)``."""
    return h.float().square().mean()


class UnitTrainer(MethodTrainer):
    def __init__(self, model: UnitModel, config: UnitTrainConfig, device: torch.device) -> None:
        self.model = model.to(device).train()
        self.config = config
        self.device = device
        channels = (model.config["channels_a"], model.config["channels_b"])
        self.dis_a, self.dis_b = (
            MultiScaleDiscriminator(c, config.dis_dim, config.dis_layers, config.dis_scales).to(device)
            for c in channels
        )
        adam = dict(lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        # model.parameters() lists the blocks tied across domains once, so each
        # shared parameter gets one Adam state and one update per step.
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

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], iteration: int) -> dict[str, float]:
        cfg = self.config
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        x_a, x_b = (x.to(self.device, non_blocking=True) for x in batch)
        with autocast(self.device):
            h_a, h_b = gen_a.encode(x_a), gen_b.encode(x_b)
            z_a, z_b = sample_latent(h_a), sample_latent(h_b)
            x_ab = gen_b.decode(z_a)
            x_ba = gen_a.decode(z_b)

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
            recon_a = gen_a.decode(z_a)
            recon_b = gen_b.decode(z_b)
            h_ab = gen_b.encode(x_ab)  # x_a's content, seen from domain b
            h_ba = gen_a.encode(x_ba)
            cycle_a = gen_a.decode(sample_latent(h_ab))
            cycle_b = gen_b.decode(sample_latent(h_ba))
            losses = {
                "gan": lsgan_generator(self.dis_a(x_ba)) + lsgan_generator(self.dis_b(x_ab)),
                "image": l1(recon_a, x_a) + l1(recon_b, x_b),
                "kl": kl(h_a) + kl(h_b),
                "cycle": l1(cycle_a, x_a) + l1(cycle_b, x_b),
                "cycle_kl": kl(h_ab) + kl(h_ba),
            }
            weights = {
                "gan": cfg.gan_weight,
                "image": cfg.image_weight,
                "kl": cfg.kl_weight,
                "cycle": cfg.cycle_weight,
                "cycle_kl": cfg.cycle_kl_weight,
            }
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
        """Rows: inputs a, a→b, inputs b, b→a (deterministic: the latent mean is decoded)."""
        self.model.eval()
        x_a, x_b = (x.to(self.device) for x in batch)
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        x_ab = gen_b.decode(gen_a.encode(x_a))
        x_ba = gen_a.decode(gen_b.encode(x_b))
        self.model.train()
        return torch.cat([_displayable(x) for x in (x_a, x_ab, x_b, x_ba)])


def build_trainer(model: UnitModel, settings: Mapping[str, Any], device: torch.device) -> UnitTrainer:
    return UnitTrainer(model, UnitTrainConfig.from_mapping(settings), device)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(
        TrainerSpec(engine="unit", data="unpaired", presets=TRAIN_PRESETS, build=build_trainer)
    )
