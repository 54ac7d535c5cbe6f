"""Trainer plugin of the unified-style-space engine (entry point ``unified_trainer``): it trains
on the ``domains`` data kind (one subfolder per domain)."""

from napari_i2i import hookimpl
from napari_i2i.contract.trainer_api import TrainerSpec
from trainers.unified.trainer import TRAIN_PRESETS, UnifiedTrainConfig, UnifiedTrainer, build_trainer


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(TrainerSpec(engine="unified", data="domains", presets=TRAIN_PRESETS, build=build_trainer))


__all__ = ["TRAIN_PRESETS", "UnifiedTrainConfig", "UnifiedTrainer", "build_trainer", "i2i_register_trainers"]
