""":class:`StepTrainer`: StEP's chosen stages run in turn inside the shared training loop.

Each stage has its own iteration count; the loop's iteration says which stage
owns the step (the last chosen stage takes any iterations past the planned
total), and the checkpoint holds the stage, the iterations done in each and
the current triplet pool, so every stage resumes exactly.

VGG16 weights come from a file (``vgg_weights``) or the torch cache; without
either a VGG16 randomly initialised from ``vgg_seed`` is used (random-filter
Gram statistics still describe texture). ``log.jsonl`` (event ``vgg``) and
the model file's provenance say which.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from engines.step import StepModel
from napari_i2i.contract.trainer_api import MethodTrainer, ScoringTranslation
from trainers.discriminators import MultiScaleDiscriminator
from trainers.precision import TrainingRuntime
from trainers.step.settings import STAGES, StepTrainConfig
from trainers.step.stages import (
    FinetuneStage,
    GeneratorStage,
    MapperStage,
    Stage,
    StageContext,
    StageState,
    StyleStage,
)
from trainers.two_domain import displayable
from trainers.vgg import load_vgg16


class StepTrainer(MethodTrainer):
    """Runs the chosen stages in order; ``model`` (encoder, generator, mapper) is what is saved."""

    model: StepModel

    def __init__(self, model: StepModel, config: StepTrainConfig, device: torch.device,
                 runtime: TrainingRuntime | None = None) -> None:
        self.config = config
        self.device = device
        self.runtime = runtime or TrainingRuntime(device)
        self.model = model.to(device).train()
        c = model.config
        self.dis = MultiScaleDiscriminator(c["channels_a"] + c["channels_b"], config.dis_dim, config.dis_layers,
                                           config.dis_scales).to(device)
        # The trainer's own random stream, seeded from the global one (run.train seeds that) and
        # kept in the checkpoint: draws elsewhere (a DataLoader starting) cannot shift it.
        self.rng = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.state = StageState(config.style_pool, self.rng).to(device)
        self.state.register_load_state_dict_post_hook(self._restore_rng)
        self.scaler = self.runtime.grad_scaler()  # fp16 only; a pass-through otherwise
        self.context = StageContext(config, self.model, self.dis, self.state, self.rng, self.scaler, device,
                                    self.runtime)
        self.runtime.compile_networks(self.model, self.dis)
        # Every stage exists, chosen or not, so a checkpoint holds the same optimisers whatever the choice.
        generator_stage = GeneratorStage(self.context)
        self.stages: dict[str, Stage] = {
            "style": StyleStage(self.context),
            "generator": generator_stage,
            "finetune": FinetuneStage(self.context, generator_stage),
            "mapper": MapperStage(self.context),
        }
        self.schedule = [(self.stages[name], getattr(config, f"{name}_iterations")) for name in config.stages]
        self._events: list[dict[str, Any]] = [{
            "event": "stages",
            "schedule": [{"stage": stage.name, "iterations": n} for stage, n in self.schedule],
        }]
        self.vgg_source: str | None = None
        if self._vgg_uses():
            self._load_vgg()

    def _restore_rng(self, module: nn.Module, incompatible_keys: Any) -> None:
        """After a checkpoint is loaded: the random stream goes on where it was."""
        self.rng.set_state(self.state.rng.cpu())

    @property
    def vgg(self) -> Any:
        return self.context.vgg

    def _vgg_uses(self) -> list[str]:
        """What the chosen stages need VGG16 for, each once, in stage order."""
        uses = [stage.vgg_use() for stage, _ in self.schedule]
        return list(dict.fromkeys(use for use in uses if use))

    def _load_vgg(self) -> None:
        cfg = self.config
        channels_b = self.model.config["channels_b"]
        self.context.vgg, self.vgg_source = load_vgg16(cfg.vgg_weights, self.device, fallback_seed=cfg.vgg_seed)
        used_for = self._vgg_uses()
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
        return {key: optimizer for stage in self.stages.values() for key, optimizer in stage.optimizers().items()}

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        return {"grad": self.scaler}

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def attach_dataset(self, dataset: Any) -> None:
        """The training pairs (items ``(x_a, x_b)``, any index ≥ 0), for the triplet pools of
        stage 1 and the codes of stage 4; ``trainers.run.train`` calls this."""
        self.context.dataset = dataset
        for stage in self.stages.values():
            stage.attach_dataset()

    def provenance(self) -> dict[str, Any]:
        """For the model file: the VGG16 used, the iterations each stage ran, whether the mapper was fitted."""
        done = self.state.done.tolist()
        return {
            "name": "StEP",
            "vgg": {"source": self.vgg_source} if self.vgg_source else None,
            "stages": {stage.name: {"planned": n, "done": done[stage.index]} for stage, n in self.schedule},
            "mapper_trained": self.model.mapper_trained,
        }

    def stage_at(self, iteration: int) -> tuple[Stage, int, int]:
        """``(stage, iteration within it, its planned length)``; past the plan, the last stage goes on."""
        start = 0
        for stage, length in self.schedule:
            if iteration < start + length:
                return stage, iteration - start, length
            start += length
        stage, length = self.schedule[-1]
        return stage, iteration - (start - length), length

    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        stage, local, length = self.stage_at(iteration)
        if stage.index < int(self.state.stage):
            raise RuntimeError(
                f"iteration {iteration} falls in stage {stage.name!r}, but the checkpoint is at stage "
                f"{STAGES[int(self.state.stage)]!r}: the stages or their iteration counts changed"
            )
        losses = stage.step(batch, local, length)
        self.state.stage.fill_(stage.index)
        self.state.done[stage.index] += 1
        self.state.rng.copy_(self.rng.get_state())
        return {"stage": float(stage.index + 1), **losses}

    def training_codes(self, batch_size: int = 32) -> torch.Tensor:
        """``(N, style_dim)``: the codes of the training set's B images (stage 4's targets)."""
        return self.stages["mapper"].training_codes(batch_size)

    @torch.no_grad()
    def validation_images(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Rows: inputs A, targets B, A→B in its own target's style, A→B in the next pair's style
        (and, once the mapper is fitted, A→B in a sampled style)."""
        [scored] = self.scoring_translations(batch)
        rows = [scored.source, scored.target_examples, scored.translated, scored.second_style]
        model = self.model
        if model.mapper_trained:
            was_training = model.training
            model.eval()
            with self.runtime.autocast():
                rows.append(model.generator(scored.source, model.sample_styles(len(scored.source), seed=0)))
            model.train(was_training)
        return torch.cat([displayable(row.float()) for row in rows])

    @torch.no_grad()
    def scoring_translations(self, batch: tuple[torch.Tensor, torch.Tensor]) -> list[ScoringTranslation]:
        """A→B in each target's style, and in the next pair's (diversity); no way back: no reconstruction."""
        x_a, x_b = (x.to(self.device) for x in batch)
        model = self.model
        was_training = model.training
        model.eval()
        with self.runtime.autocast():
            codes = model.style_encoder(x_b).float()
            own, other = model.generator(x_a, codes), model.generator(x_a, codes.roll(1, 0))
        model.train(was_training)
        return [ScoringTranslation(x_a, own.float(), x_b, second_style=other.float())]
