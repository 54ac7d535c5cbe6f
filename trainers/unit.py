"""UNIT training (Liu, Breuel & Kautz, NIPS 2017; ``docs/methods.md`` §1).

Per domain a VAE with the "reduced" posterior ``z = h + ε`` (KL term
``mean(h²)``), an LSGAN with multi-scale discriminators on the translations
``x_ab = G_b(z_a)``, ``x_ba = G_a(z_b)``, and cycle consistency through the
shared latent space: ``x_a → z_a → x_ab → h_ab → z = h_ab + ε → G_a ≈ x_a``
(with its own KL term on ``h_ab``), and the same for ``b``; CycleGAN's
identity term ``G_b(E_a(x_b)) ≈ x_b`` (``identity_weight``, on in ``small``:
what already looks like the target is kept). The update
scheme is in :mod:`trainers.two_domain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from engines.blocks.autoencoder import translation_and_gate
from engines.unit import UnitModel
from engines.unit.networks import sample_latent
from napari_i2i import hookimpl
from napari_i2i.contract.trainer_api import TrainerSpec
from trainers.losses import l1
from trainers.precision import TrainingRuntime
from trainers.two_domain import SMALL_TWO_DOMAIN, AdversarialSettings, TwoDomainTrainer, identity_error


@dataclass
class UnitTrainConfig(AdversarialSettings):
    method: ClassVar[str] = "UNIT"
    image_weight: float = 10.0
    kl_weight: float = 0.01
    cycle_weight: float = 10.0
    cycle_kl_weight: float = 0.01


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: Adam(0.5, 0.999), lr 1e-4, weight decay 1e-4, halved every
    # 100k iterations; loss weights of the public default configuration.
    "paper": {},
    "small": SMALL_TWO_DOMAIN,
}


def kl(h: torch.Tensor) -> torch.Tensor:
    """KL of ``N(h, I)`` to ``N(0, I)`` up to a constant and scale: ``mean(h²)``."""
    return h.float().square().mean()


class UnitTrainer(TwoDomainTrainer):
    model: UnitModel
    config: UnitTrainConfig

    def translate(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        h_a, h_b = gen_a.encode(x_a), gen_b.encode(x_b)
        z_a, z_b = sample_latent(h_a), sample_latent(h_b)
        x_ab, gate_ab = translation_and_gate(gen_b.decoder(z_a), x_a, gen_b.input_gate)
        x_ba, gate_ba = translation_and_gate(gen_a.decoder(z_b), x_b, gen_a.input_gate)
        return dict(h_a=h_a, h_b=h_b, z_a=z_a, z_b=z_b, x_ab=x_ab, x_ba=x_ba, gate_ab=gate_ab, gate_ba=gate_ba)

    def generator_losses(
        self, x_a: torch.Tensor, x_b: torch.Tensor, f: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        cfg = self.config
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        h_ab = gen_b.encode(f["x_ab"])  # x_a's content, seen from domain b
        h_ba = gen_a.encode(f["x_ba"])
        losses = {
            "image": l1(gen_a.decode(f["z_a"]), x_a) + l1(gen_b.decode(f["z_b"]), x_b),
            "kl": kl(f["h_a"]) + kl(f["h_b"]),
            # the way back without the gate: closing both gates must not pass the cycle for free
            "cycle": l1(gen_a.decode(sample_latent(h_ab)), x_a) + l1(gen_b.decode(sample_latent(h_ba)), x_b),
            "cycle_kl": kl(h_ab) + kl(h_ba),
        }
        weights = {
            "image": cfg.image_weight,
            "kl": cfg.kl_weight,
            "cycle": cfg.cycle_weight,
            "cycle_kl": cfg.cycle_kl_weight,
        }
        if self.identity_term:  # the latent mean, as at inference
            losses["identity"] = (identity_error(gen_b.decoder(gen_a.encode(x_b)), x_b, gen_b.input_gate)
                                  + identity_error(gen_a.decoder(gen_b.encode(x_a)), x_a, gen_a.input_gate))
            weights["identity"] = cfg.identity_weight
        return losses, weights

    def translate_for_display(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent mean is decoded, as at inference."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        return gen_b.decode(gen_a.encode(x_a), x_a), gen_a.decode(gen_b.encode(x_b), x_b)

    def translate_back(self, x_ab: torch.Tensor, x_ba: torch.Tensor, x_a: torch.Tensor,
                       x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Back without the input gate, as the cycle loss does."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        return gen_a.decode(gen_b.encode(x_ab)), gen_b.decode(gen_a.encode(x_ba))


def build_trainer(model: UnitModel, settings: Mapping[str, Any], device: torch.device,
                  runtime: TrainingRuntime | None = None) -> UnitTrainer:
    return UnitTrainer(model, UnitTrainConfig.from_mapping(settings), device, runtime)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(
        TrainerSpec(engine="unit", data="unpaired", presets=TRAIN_PRESETS, build=build_trainer)
    )
