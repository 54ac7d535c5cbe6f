"""MUNIT training (Huang et al., ECCV 2018; ``shared/METHODS.md`` §2).

Losses: image reconstruction, content and style reconstruction, LSGAN with
multi-scale discriminators, and the style-augmented cycle (example-guided
translation needs it). The update scheme is in :mod:`trainers.two_domain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from engines.munit import MunitModel
from napari_i2i import hookimpl
from trainers.loop import TrainerSpec
from trainers.losses import l1
from trainers.two_domain import SMALL_OPTIMISATION, AdversarialSettings, TwoDomainTrainer


@dataclass
class MunitTrainConfig(AdversarialSettings):
    method: ClassVar[str] = "MUNIT"
    image_weight: float = 10.0
    content_weight: float = 1.0
    style_weight: float = 1.0
    cycle_weight: float = 10.0  # style-augmented cycle


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: Adam(0.5, 0.999), lr 1e-4, halved every 100k iterations.
    "paper": {},
    "small": SMALL_OPTIMISATION,
}


class MunitTrainer(TwoDomainTrainer):
    model: MunitModel
    config: MunitTrainConfig

    def translate(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        style_dim = gen_a.style_dim
        s_a = torch.randn(len(x_a), style_dim, device=self.device)
        s_b = torch.randn(len(x_b), style_dim, device=self.device)
        content_a, style_a = gen_a.encode(x_a)
        content_b, style_b = gen_b.encode(x_b)
        return dict(
            s_a=s_a, s_b=s_b, content_a=content_a, style_a=style_a, content_b=content_b,
            style_b=style_b, x_ba=gen_a.decode(content_b, s_a), x_ab=gen_b.decode(content_a, s_b),
        )

    def generator_losses(
        self, x_a: torch.Tensor, x_b: torch.Tensor, f: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        cfg = self.config
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        content_b_back, s_a_back = gen_a.encode(f["x_ba"])
        content_a_back, s_b_back = gen_b.encode(f["x_ab"])
        losses = {
            "image": l1(gen_a.decode(f["content_a"], f["style_a"]), x_a)
            + l1(gen_b.decode(f["content_b"], f["style_b"]), x_b),
            "content": l1(content_a_back, f["content_a"]) + l1(content_b_back, f["content_b"]),
            "style": l1(s_a_back, f["s_a"]) + l1(s_b_back, f["s_b"]),
        }
        weights = {"image": cfg.image_weight, "content": cfg.content_weight, "style": cfg.style_weight}
        if cfg.cycle_weight > 0:
            losses["cycle"] = l1(gen_a.decode(content_a_back, f["style_a"]), x_a) + l1(
                gen_b.decode(content_b_back, f["style_b"]), x_b
            )
            weights["cycle"] = cfg.cycle_weight
        return losses, weights

    def translate_for_display(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed styles (seed 0), so validation images of a run are comparable."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        styles = torch.randn(max(len(x_a), len(x_b)), gen_a.style_dim, generator=torch.Generator().manual_seed(0))
        styles = styles.to(self.device)
        x_ab = gen_b.decode(gen_a.content_encoder(x_a), styles[: len(x_a)])
        x_ba = gen_a.decode(gen_b.content_encoder(x_b), styles[: len(x_b)])
        return x_ab, x_ba


def build_trainer(model: MunitModel, settings: Mapping[str, Any], device: torch.device) -> MunitTrainer:
    return MunitTrainer(model, MunitTrainConfig.from_mapping(settings), device)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(
        TrainerSpec(engine="munit", data="unpaired", presets=TRAIN_PRESETS, build=build_trainer)
    )
