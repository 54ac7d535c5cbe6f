"""Training of the unified-style-space engine (``docs/methods.md`` §5).

Each item is a source image ``x`` of domain ``u₁`` and a reference ``y`` of a
target domain ``u``. The target style ``s̃`` is latent (``A·f(z; θ_u)``) on even
iterations and the reference's (``E^u(y)``) on odd ones: StarGAN v2 runs both
kinds of update every iteration, alternating halves the cost. Losses: the
non-saturating GAN with one discriminator output per domain and R1 on real
images; style reconstruction ``‖E^u(G(x, s̃)) − s̃‖₁``; cycle
``‖G(G(x, s̃), E^{u₁}(x)) − x‖₁``; diversity ``−‖G(x, s₁) − G(x, s₂)‖₁`` between two
latent styles (latent iterations), its weight falling linearly to 0;
unification: a style discriminator tells latent from reference styles, the
style encoder is pushed to make its styles pass as latent ones and the flow its
latent styles as reference ones (both minimise ``L_uni``); smoothness: a
triplet on the style encoder (an augmented view closer than the nearest other
image of the batch); optionally (``identity_weight`` > 0, ours) CycleGAN's
identity term on the reference, ``G(y, E^u(y)) ≈ y``: what already looks like
the target is kept; optionally (``flow_fit_weight`` > 0, ours) the flow is fitted by
likelihood to the reference styles, which are kept in the subspace it draws in;
optionally (``style_r1_weight`` > 0, ours) R1 on the style discriminator: without it
the encoder and the flow, both pushed by ``L_uni``, circle each other, and without the
fit they end further apart than with no ``L_uni``; optionally (``unification_draws`` > 0,
ours) ``L_uni`` on many latent draws per domain against a memory of as many recent
reference styles, where a batch holds about one of each per domain. The saved model is
a moving average of the trained one.

With the model's ``input_gate`` a translation blends with the image it translates
(``net.generator(images, s)``): ``G(x, s̃)`` and its diversity twin with ``x``, the
cycle's way back with the translation it starts from. The identity term is a
reconstruction (``y`` through the one content encoder, in its own style) and takes
the decoder's image alone: blended, a closed gate would satisfy it exactly, and
at weight 5 the gate learnt to keep the input everywhere (docs/benchmarks.md,
"The input gate").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from engines.unified import UnifiedModel
from napari_i2i.contract.trainer_api import MethodSettings, MethodTrainer, ScoringTranslation
from trainers.discriminators import MultiTaskDiscriminator
from trainers.losses import l1, r1_penalty
from trainers.precision import TrainingRuntime
from trainers.two_domain import displayable
from trainers.ema import ema_beta, update_average
from trainers.unified.typical import measure_typical_styles
from trainers.unified.losses import (
    StyleDiscriminator,
    StyleMemory,
    decayed_weight,
    dihedral_views,
    nonsaturating_discriminator,
    nonsaturating_generator,
    smoothness_triplet,
    unification_generator,
)

VALIDATION_SEED = 1234  # the latent styles of the validation grids: the same at every validation


@dataclass
class UnifiedTrainConfig(MethodSettings):
    """The trainer's settings; defaults are StarGAN v2's where it has them, else ours (marked)."""

    lr: float = 1e-4  # generator, style encoder, discriminators
    flow_lr: float = 1e-6  # the latent flow, as StarGAN v2's mapping network
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    adversarial_weight: float = 1.0
    r1_weight: float = 1.0
    style_weight: float = 1.0  # λ_sty
    cycle_weight: float = 1.0  # λ_cyc
    diversity_weight: float = 1.0  # λ_ds at the start …
    diversity_iterations: int = 100_000  # … falling linearly to 0 over these iterations
    unification_weight: float = 1.0  # λ_uni (ours: not published)
    smoothness_weight: float = 1.0  # λ_smooth (ours)
    smoothness_margin: float = 0.1  # α (ours)
    identity_weight: float = 0.0  # ours: a reference in its own style comes out unchanged, G(y, E^u(y)) ≈ y
    flow_fit_weight: float = 0.0  # ours: the flow fitted by likelihood to each domain's reference styles
    style_r1_weight: float = 0.0  # ours: R1 on the style discriminator's latent styles, so L_uni settles
    unification_draws: int = 0  # ours: L_uni on this many latent draws and remembered references per domain
    ema_beta: float = 0.999
    ema_warmup: bool = False  # beta min(ema_beta, (1 + t) / (10 + t)): the average follows early training
    dis_dim: int = 64
    dis_blocks: int = 10
    dis_max_dim: int = 512
    style_dis_dim: int = 256
    method: ClassVar[str] = "unified"

    def check(self) -> None:
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if self.diversity_iterations < 0 or self.smoothness_margin < 0:
            raise ValueError("diversity_iterations and smoothness_margin must be ≥ 0")
        if self.style_r1_weight < 0:
            raise ValueError(f"style_r1_weight must be ≥ 0, got {self.style_r1_weight}")
        if self.unification_draws < 0:
            raise ValueError(f"unification_draws must be ≥ 0, got {self.unification_draws}")
        if self.lr <= 0 or self.flow_lr < 0:
            raise ValueError(f"lr must be > 0 and flow_lr ≥ 0, got {self.lr} and {self.flow_lr}")


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU-sized: narrow discriminators, a higher learning rate, a flow that learns at the same rate
    # (at 1e-6 it would not move in a few thousand iterations), λ_ds decaying over the run's 5,000
    # iterations and an average that follows early training, the identity term and the flow fit (ours).
    "small": {
        "lr": 2e-4, "flow_lr": 2e-4, "weight_decay": 0.0, "diversity_iterations": 5_000,
        "ema_warmup": True, "dis_dim": 16, "dis_blocks": 6, "dis_max_dim": 128, "style_dis_dim": 64,
        "identity_weight": 5.0,  # 3 seeds of the multi-domain benchmark: better on every pair
        "flow_fit_weight": 0.3,  # the same: the two kinds of style closer at every seed, every pair still beaten
    },
}


@dataclass
class _Forward:
    """What one iteration's generator forward made, for both updates."""

    target_style: torch.Tensor
    latent_styles: torch.Tensor
    reference_styles: torch.Tensor
    fake: torch.Tensor
    latent: bool  # the target style was latent (this iteration's kind of update)
    draws: torch.Tensor | None = None  # unification_draws latent styles per domain, for L_uni
    draw_domains: torch.Tensor | None = None


class UnifiedTrainer(MethodTrainer):
    """``network`` is trained; ``model``, its moving average, is what is saved and shown."""

    model: UnifiedModel

    def __init__(self, model: UnifiedModel, config: UnifiedTrainConfig, device: torch.device,
                 runtime: TrainingRuntime | None = None) -> None:
        self.config, self.device = config, device
        self.runtime = runtime or TrainingRuntime(device)
        self.network = model.to(device).train()
        self.model = copy.deepcopy(self.network).requires_grad_(False)
        domains, c = len(model.domains), model.config
        self.dis = MultiTaskDiscriminator(c["channels"], domains, config.dis_dim, config.dis_blocks,
                                          config.dis_max_dim).to(device)
        self.style_dis = StyleDiscriminator(c["style_dim"], config.style_dis_dim, domains).to(device)
        self.style_memory = (StyleMemory(domains, config.unification_draws, c["style_dim"]).to(device)
                             if config.unification_draws else None)
        betas = (config.beta1, config.beta2)
        self.gen_optimizer = torch.optim.Adam([
            {"params": [*model.generator.parameters(), *model.style_encoder.parameters()]},
            {"params": model.style_flow.parameters(), "lr": config.flow_lr},
        ], lr=config.lr, betas=betas, weight_decay=config.weight_decay)
        self.dis_optimizer = torch.optim.Adam([*self.dis.parameters(), *self.style_dis.parameters()],
                                              lr=config.lr, betas=betas, weight_decay=config.weight_decay)
        self.scaler = self.runtime.grad_scaler()  # fp16 only; a pass-through otherwise
        # the style flow stays eager: its splines run in float32 outside autocast
        self.runtime.compile_networks(self.network.generator, self.network.style_encoder, self.dis, self.style_dis)
        self.dataset: Any = None  # the training items (attach_dataset), for the typical styles

    def attach_dataset(self, dataset: Any) -> None:
        self.dataset = dataset

    def before_saving(self) -> None:
        """Into the saved model: each domain's typical style, by the model saved."""
        if self.model.has_typical_styles and self.dataset is not None:
            self.model.store_typical_styles(measure_typical_styles(self.model, self.dataset, self.device))

    def modules(self) -> Mapping[str, nn.Module]:
        modules = {"network": self.network, "network_ema": self.model, "discriminator": self.dis,
                   "style_discriminator": self.style_dis}
        return modules if self.style_memory is None else {**modules, "style_memory": self.style_memory}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"generator": self.gen_optimizer, "discriminator": self.dis_optimizer}

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        return {"grad": self.scaler}

    def ema_beta(self, iteration: int) -> float:
        return ema_beta(self.config.ema_beta, self.config.ema_warmup, iteration)

    def update_average(self, iteration: int) -> None:
        update_average(self.model, self.network, self.ema_beta(iteration))

    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        """*batch* is ``((x, domains_x), (y, domains_y))``: source images, references of the targets."""
        (x, source), (y, target) = ((t.to(self.device, non_blocking=True) for t in pair) for pair in batch)
        forward = self._forward(x, y, target, latent=iteration % 2 == 0)
        dis_loss, losses = self._discriminator_update(x, source, target, forward)
        gen_loss, gen_losses = self._generator_update(x, y, source, target, forward, iteration)
        self.update_average(iteration)
        losses.update(gen_losses)
        return {"dis": dis_loss.item(), "gen": gen_loss.item(), **{k: v.item() for k, v in losses.items()}}

    def _forward(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, latent: bool) -> _Forward:
        net = self.network
        latents = torch.randn(len(x), net.config["latent_dim"]).to(self.device)  # CPU draws: the loop saves them
        latent_styles = net.style_flow(latents, target)  # float32: splines outside autocast
        with self.runtime.autocast():
            reference_styles = net.style_encoder(y, target)
            target_style = latent_styles if latent else reference_styles
            fake = net.generator(x, target_style)
        draws = draw_domains = None
        if self.style_memory is not None:  # this batch's references join the memory before it is judged
            self.style_memory.push(reference_styles, target)
            draw_domains = torch.arange(len(net.domains)).repeat_interleave(self.config.unification_draws)
            draw_domains = draw_domains.to(self.device)
            draws = net.style_flow(torch.randn(len(draw_domains), net.config["latent_dim"]).to(self.device),
                                   draw_domains)
        return _Forward(target_style, latent_styles, reference_styles, fake, latent, draws, draw_domains)

    def _discriminator_update(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                              forward: _Forward) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images: x real (its domain's output), the translation fake (the target's), R1 on x.
        Styles: latent ones real, reference ones fake."""
        cfg = self.config
        real = x.detach().requires_grad_(cfg.r1_weight > 0)
        latent_styles, latent_domains = self._unification_latents(forward, target)
        reference_styles, reference_domains = ((forward.reference_styles, target) if self.style_memory is None
                                               else self.style_memory.contents())
        latent_styles = latent_styles.detach().float().requires_grad_(cfg.style_r1_weight > 0)
        with self.runtime.autocast():
            real_logits = self.dis(real, source)
            adversarial = nonsaturating_discriminator(real_logits, self.dis(forward.fake.detach(), target))
            latent_logits = self.style_dis(latent_styles, latent_domains)
            unification = nonsaturating_discriminator(
                latent_logits, self.style_dis(reference_styles.detach().float(), reference_domains))
        dis_loss = cfg.adversarial_weight * adversarial + cfg.unification_weight * unification
        losses = {"adversarial_dis": adversarial.detach(), "unification_dis": unification.detach()}
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        if cfg.r1_weight > 0:
            losses["r1"] = r1_penalty(real_logits, real, scale)
            dis_loss = dis_loss + cfg.r1_weight * losses["r1"]
        if cfg.style_r1_weight > 0:
            losses["style_r1"] = r1_penalty(latent_logits[:, None], latent_styles, scale)
            dis_loss = dis_loss + cfg.style_r1_weight * losses["style_r1"]
        self.dis_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(dis_loss).backward()
        self.scaler.step(self.dis_optimizer)
        return dis_loss, losses

    @staticmethod
    def _unification_latents(forward: _Forward, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent styles ``L_uni`` judges, with their domains: the batch's, or the draws."""
        return (forward.latent_styles, target) if forward.draws is None else (forward.draws, forward.draw_domains)

    def _generator_update(self, x: torch.Tensor, y: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                          forward: _Forward, iteration: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scored by the updated discriminators; generator, style encoder and flow learn together."""
        cfg, net = self.config, self.network
        diversity_weight = decayed_weight(cfg.diversity_weight, iteration, cfg.diversity_iterations)
        self.dis.requires_grad_(False)
        self.style_dis.requires_grad_(False)
        views = dihedral_views(x.detach().cpu()).to(self.device)
        with self.runtime.autocast():
            terms = {"adversarial": nonsaturating_generator(self.dis(forward.fake, target)),
                     "style": l1(net.style_encoder(forward.fake, target), forward.target_style)}
            all_heads = net.style_encoder.heads(net.style_encoder.trunk(x))
            own_styles = all_heads.view(len(x), len(net.domains), -1)
            own_style = own_styles[torch.arange(len(x), device=x.device), source]
            # the way back translates the translation: gated, it blends with forward.fake, not with x
            terms["cycle"] = l1(net.generator(forward.fake, own_style), x)
            latent_styles, latent_domains = self._unification_latents(forward, target)
            terms["unification"] = unification_generator(self.style_dis(latent_styles.float(), latent_domains),
                                                         self.style_dis(forward.reference_styles.float(), target))
            terms["smoothness"] = smoothness_triplet(own_styles, source, net.style_encoder(views, source),
                                                     cfg.smoothness_margin)
            gen_loss = (cfg.adversarial_weight * terms["adversarial"] + cfg.style_weight * terms["style"]
                        + cfg.cycle_weight * terms["cycle"])
            if forward.latent:  # a term of latent iterations only: left out of the others' losses
                terms["diversity"] = self._diversity(x, target, forward, diversity_weight)
                gen_loss = gen_loss - diversity_weight * terms["diversity"]
            gen_loss = (gen_loss + cfg.unification_weight * terms["unification"]
                        + cfg.smoothness_weight * terms["smoothness"])
            if cfg.flow_fit_weight > 0:
                terms["flow_fit"] = self._flow_fit(forward.reference_styles, target)
                gen_loss = gen_loss + cfg.flow_fit_weight * terms["flow_fit"]
            if cfg.identity_weight > 0:  # a reconstruction: never blended with y (module docstring)
                remade = net.generator.decode(net.generator.content_encoder(y), forward.reference_styles)
                terms["identity"] = l1(remade, y)
                gen_loss = gen_loss + cfg.identity_weight * terms["identity"]
        self.gen_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(gen_loss).backward()
        self.scaler.step(self.gen_optimizer)
        self.scaler.update()  # once per iteration, after both optimisers
        self.dis.requires_grad_(True)
        self.style_dis.requires_grad_(True)
        return gen_loss, {name: value.detach() for name, value in terms.items()}

    def _flow_fit(self, reference_styles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``−log p(A⁺E^u(y) | u) + ‖E^u(y) − AA⁺E^u(y)‖``: the flow (references detached) learns to
        draw the styles the encoder finds in domain ``u``, and the encoder keeps its styles where
        the flow can draw them, in the lifted subspace (float32: splines outside autocast)."""
        flow = self.network.style_flow
        with torch.autocast(self.device.type, enabled=False):
            styles = reference_styles.float()
            likelihood = flow.log_density(styles.detach(), target).mean()
            return torch.linalg.vector_norm(flow.off_subspace(styles), dim=-1).mean() - likelihood

    def _diversity(self, x: torch.Tensor, target: torch.Tensor, forward: _Forward, weight: float) -> torch.Tensor:
        """``‖G(x, s₁) − G(x, s₂)‖₁`` for a second latent style (the second output detached, as in
        StarGAN v2); 0 once the weight has decayed."""
        if weight == 0:
            return torch.zeros((), device=self.device)
        net = self.network
        latents = torch.randn(len(x), net.config["latent_dim"]).to(self.device)
        with torch.autocast(self.device.type, enabled=False):
            second_style = net.style_flow(latents, target)
        second = net.generator(x, second_style).detach()
        return l1(forward.fake, second)

    @torch.no_grad()
    def validation_images(self, batch: Any) -> torch.Tensor:
        """Rows: sources, references, reference-guided and latent-guided translations (by the average)."""
        [scored] = self.scoring_translations(batch)
        rows = (scored.source, scored.target_examples, scored.translated, scored.second_style)
        return torch.cat([displayable(t.float()) for t in rows])

    @torch.no_grad()
    def scoring_translations(self, batch: Any) -> list[ScoringTranslation]:
        """Sources in their references' styles, back in their own (the cycle), and in a latent style."""
        (x, source), (y, target) = ((t.to(self.device) for t in pair) for pair in batch)
        average = self.model
        latents = torch.randn(len(x), average.config["latent_dim"],
                              generator=torch.Generator().manual_seed(VALIDATION_SEED)).to(self.device)
        latent_styles = average.style_flow(latents, target)
        with self.runtime.autocast():
            by_reference = average.generator(x, average.style_encoder(y, target))
            back = average.generator(by_reference, average.style_encoder(x, source))
            by_latent = average.generator(x, latent_styles)
        return [ScoringTranslation(x, by_reference.float(), y, back.float(), by_latent.float(), "source→reference")]


def build_trainer(model: UnifiedModel, settings: Mapping[str, Any], device: torch.device,
                  runtime: TrainingRuntime | None = None) -> UnifiedTrainer:
    return UnifiedTrainer(model, UnifiedTrainConfig.from_mapping(settings), device, runtime)
