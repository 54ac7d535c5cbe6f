"""StEP training (Meshry et al., CVPR 2021; ``docs/methods.md`` §4): four stages.

1. ``style`` — the style encoder alone, by triplets: the style distance of two
   images is the Gram-matrix style loss over VGG16 features; for an anchor, a
   positive is drawn among its ``positives_from`` (5) nearest images of a pool
   and a negative among its ``negatives_from`` (13) farthest; loss
   ``max(‖z_a − z_p‖² − ‖z_a − z_n‖² + α, 0) + λ·L2(z)`` (α 0.1, λ 0.01).
2. ``generator`` — ``Î_B = G(I_A, z)``, ``z = E(I_B)`` with the encoder frozen:
   LSGAN with a multi-scale PatchGAN discriminator on (input, output) pairs,
   VGG perceptual reconstruction (0.02) and L2 on ``z`` (0.01).
3. ``finetune`` — the same losses, generator and encoder trained together
   (encoder learning rate 1e-4).
4. ``mapper`` — IMLE: the codes ``z_i`` of the training B images; samples
   ``r_j ~ N(0, I)`` are mapped to ``M(r_j)``, each ``z_i`` is paired with its
   nearest ``M(r_j)`` and their distance minimised, so that styles can be
   sampled without a reference.

Stages 1 and 4 draw their images from the training set itself
(:meth:`StepTrainer.attach_dataset`, called by ``trainers.run.train``);
stages 2 and 3 use the loop's batches of aligned pairs. The pieces:
``settings`` (the ``[training]`` settings and presets), ``style_metric``
(Gram distances, triplets, IMLE), ``stages`` (one class per stage),
``trainer`` (:class:`StepTrainer`, the stages in order). This module is the
plugin's entry point (``napari_i2i.trainers``: ``step_trainer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from engines.step import StepModel
from napari_i2i import hookimpl
from napari_i2i.contract.trainer_api import TrainerSpec
from trainers.precision import TrainingRuntime
from trainers.step.settings import GRAM_LAYERS, PERCEPTUAL_LAYERS, STAGES, TRAIN_PRESETS, StepTrainConfig
from trainers.step.stages import lr_factor
from trainers.step.style_metric import (
    code_l2,
    gram_style_distances,
    gram_vectors,
    imle_loss,
    pairwise_squared_distances,
    select_triplets,
    triplet_loss,
    vgg_view,
)
from trainers.step.trainer import StepTrainer


def build_trainer(model: StepModel, settings: Mapping[str, Any], device: torch.device,
                  runtime: TrainingRuntime | None = None) -> StepTrainer:
    return StepTrainer(model, StepTrainConfig.from_mapping(settings), device, runtime)


def planned_iterations(settings: Mapping[str, Any]) -> int:
    """The loop's iterations for these training settings: the chosen stages' counts added up."""
    return StepTrainConfig.from_mapping(settings).iterations()


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(TrainerSpec(engine="step", data="paired", presets=TRAIN_PRESETS,
                                     build=build_trainer, total_iterations=planned_iterations))


__all__ = [
    "GRAM_LAYERS", "PERCEPTUAL_LAYERS", "STAGES", "TRAIN_PRESETS", "StepTrainConfig", "StepTrainer",
    "build_trainer", "code_l2", "gram_style_distances", "gram_vectors", "i2i_register_trainers", "imle_loss",
    "lr_factor", "pairwise_squared_distances", "planned_iterations", "select_triplets", "triplet_loss",
    "vgg_view",
]
