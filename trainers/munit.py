"""MUNIT training (Huang et al., ECCV 2018; ``docs/methods.md`` §2).

Losses: image reconstruction, content and style reconstruction, LSGAN with
multi-scale discriminators, the style-augmented cycle (example-guided
translation needs it), the identity term of CycleGAN (``identity_weight``; on
in ``small``: an image of the target domain put through the translation, in
its own style, comes out unchanged, so what already looks right is kept) and,
optionally (``vgg_weight`` > 0), the domain-invariant perceptual loss:
instance-normalised VGG16 features of a translation against those of its
source. The update scheme is in :mod:`trainers.two_domain`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from engines.blocks.autoencoder import translation_and_gate
from engines.munit import MunitModel
from napari_i2i import hookimpl
from napari_i2i.contract.trainer_api import TrainerSpec
from trainers.losses import l1
from trainers.precision import TrainingRuntime
from trainers.two_domain import SMALL_TWO_DOMAIN, AdversarialSettings, TwoDomainTrainer, identity_error
from trainers.vgg import Vgg16Features, VggWeightsNotFound, load_vgg16

PERCEPTUAL_LAYER = "relu5_3"  # the deepest ReLU, as in the published code


@dataclass
class MunitTrainConfig(AdversarialSettings):
    method: ClassVar[str] = "MUNIT"
    image_weight: float = 10.0
    content_weight: float = 1.0
    style_weight: float = 1.0
    cycle_weight: float = 10.0  # style-augmented cycle
    vgg_weight: float = 0.0  # domain-invariant perceptual loss; 0 (off) in the published default
    vgg_weights: str | None = None  # VGG16 weights file; else the torch hub cache


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # As published: Adam(0.5, 0.999), lr 1e-4, halved every 100k iterations.
    "paper": {},
    "small": SMALL_TWO_DOMAIN,
    "small-colour": SMALL_TWO_DOMAIN,  # the model differs (input gate, colour transform), not the training
}


def domain_invariant_perceptual(vgg: Vgg16Features, output: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """MSE between instance-normalised VGG16 features of a translation and of its source.

    Instance norm removes the per-channel feature statistics (the domain, the
    style), so what is compared is content. The source's features carry no
    gradient.
    """
    (features,) = vgg(output, (PERCEPTUAL_LAYER,))
    with torch.no_grad():
        (target,) = vgg(source, (PERCEPTUAL_LAYER,))
    if features.shape[-2] * features.shape[-1] < 2:
        raise ValueError(
            f"the VGG perceptual loss needs crops of at least 32 pixels (its {PERCEPTUAL_LAYER} "
            f"features are 1×1 at {tuple(output.shape[-2:])})"
        )
    return F.mse_loss(F.instance_norm(features.float()), F.instance_norm(target.float()))


class MunitTrainer(TwoDomainTrainer):
    model: MunitModel
    config: MunitTrainConfig

    def __init__(self, model: MunitModel, config: MunitTrainConfig, device: torch.device,
                 runtime: TrainingRuntime | None = None) -> None:
        super().__init__(model, config, device, runtime)
        self.vgg: Vgg16Features | None = None
        if config.vgg_weight > 0:
            self._load_vgg(config)

    def _load_vgg(self, config: MunitTrainConfig) -> None:
        for domain in "ab":
            channels = self.model.config[f"channels_{domain}"]
            if channels not in (1, 3):
                raise ValueError(
                    f"the VGG perceptual loss (vgg_weight) needs gray or RGB images; "
                    f"domain {domain} has {channels} channels: set vgg_weight = 0"
                )
        try:  # a named file that is missing or broken is an error, raised here
            self.vgg, source = load_vgg16(config.vgg_weights, self.device)
        except VggWeightsNotFound as error:
            message = f"VGG perceptual loss switched off (vgg_weight {config.vgg_weight}): {error}"
            warnings.warn(message, stacklevel=3)
            self._events.append({"event": "vgg_loss_off", "vgg_weight": config.vgg_weight, "reason": str(error)})
            return
        self._events.append({"event": "vgg_loss", "vgg_weight": config.vgg_weight, "source": source,
                             "layer": PERCEPTUAL_LAYER})

    def translate(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        style_dim = gen_a.style_dim
        s_a = torch.randn(len(x_a), style_dim, device=self.device)
        s_b = torch.randn(len(x_b), style_dim, device=self.device)
        content_a, style_a = gen_a.encode(x_a)
        content_b, style_b = gen_b.encode(x_b)
        x_ab, gate_ab = translation_and_gate(gen_b.decoder(content_a, s_b), x_a, gen_b.input_gate)
        x_ba, gate_ba = translation_and_gate(gen_a.decoder(content_b, s_a), x_b, gen_a.input_gate)
        return dict(
            s_a=s_a, s_b=s_b, content_a=content_a, style_a=style_a, content_b=content_b,
            style_b=style_b, x_ab=x_ab, x_ba=x_ba, gate_ab=gate_ab, gate_ba=gate_ba,
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
            # the way back without the gate: closing both gates must not pass the cycle for free
            losses["cycle"] = l1(gen_a.decode(content_a_back, f["style_a"]), x_a) + l1(
                gen_b.decode(content_b_back, f["style_b"]), x_b
            )
            weights["cycle"] = cfg.cycle_weight
        if self.identity_term:
            own_b = gen_b.decoder(gen_a.content_encoder(x_b), f["style_b"])
            own_a = gen_a.decoder(gen_b.content_encoder(x_a), f["style_a"])
            losses["identity"] = (identity_error(own_b, x_b, gen_b.input_gate)
                                  + identity_error(own_a, x_a, gen_a.input_gate))
            weights["identity"] = cfg.identity_weight
        if self.vgg is not None:  # on the translations the step already made
            losses["vgg"] = domain_invariant_perceptual(self.vgg, f["x_ab"], x_a) + domain_invariant_perceptual(
                self.vgg, f["x_ba"], x_b
            )
            weights["vgg"] = cfg.vgg_weight
        return losses, weights

    def translate_for_display(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed styles (seed 0), so validation images of a run are comparable."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        styles = torch.randn(max(len(x_a), len(x_b)), gen_a.style_dim, generator=torch.Generator().manual_seed(0))
        styles = styles.to(self.device)
        x_ab = gen_b.decode(gen_a.content_encoder(x_a), styles[: len(x_a)], x_a)
        x_ba = gen_a.decode(gen_b.content_encoder(x_b), styles[: len(x_b)], x_b)
        return x_ab, x_ba

    def translate_back(self, x_ab: torch.Tensor, x_ba: torch.Tensor, x_a: torch.Tensor,
                       x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Back in each input's own style, as the cycle loss does."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        x_aba = gen_a.decode(gen_b.content_encoder(x_ab), gen_a.style_encoder(x_a))
        x_bab = gen_b.decode(gen_a.content_encoder(x_ba), gen_b.style_encoder(x_b))
        return x_aba, x_bab

    def second_styles(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Styles of another seed (1) than the display's."""
        gen_a, gen_b = self.model.gen_a, self.model.gen_b
        styles = torch.randn(max(len(x_a), len(x_b)), gen_a.style_dim, generator=torch.Generator().manual_seed(1))
        styles = styles.to(self.device)
        return (gen_b.decode(gen_a.content_encoder(x_a), styles[: len(x_a)], x_a),
                gen_a.decode(gen_b.content_encoder(x_b), styles[: len(x_b)], x_b))


def build_trainer(model: MunitModel, settings: Mapping[str, Any], device: torch.device,
                  runtime: TrainingRuntime | None = None) -> MunitTrainer:
    return MunitTrainer(model, MunitTrainConfig.from_mapping(settings), device, runtime)


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(
        TrainerSpec(engine="munit", data="unpaired", presets=TRAIN_PRESETS, build=build_trainer)
    )
