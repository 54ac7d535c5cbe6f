"""Aligned image pairs (StEP): two folders matched by file name, or one folder of side-by-side
A|B images."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_i2i.contract.trainer_api import (
    DataKind,
    DataOptions,
    DataRole,
    DataSettings,
    LayerChoice,
    LayerPlace,
    LayerShape,
    LoadedData,
)
from trainers.data_kinds.unpaired import first_items


class PairedKind(DataKind):
    name = "paired"
    description = "aligned image pairs (--pairs-a DIR [--pairs-b DIR])"
    roles = (
        DataRole("pairs_a", "--pairs-a", "images of domain A, or side-by-side A|B images without --pairs-b",
                 layers=LayerChoice.ONE, label="Input layer (A)",
                 tooltip="the input images of aligned pairs; plane i pairs with plane i of B"),
        DataRole("pairs_b", "--pairs-b", "images of domain B, named as their partners in --pairs-a",
                 required=False, layers=LayerChoice.ONE, label="Target layer (B)",
                 tooltip="the targets, aligned pixel for pixel with A: same shape"),
        DataRole("stages", "--stages", "the training stages to run, of style,generator,finetune,mapper "
                 "(default: all)", metavar="NAME,NAME", required=False, folder=False, layers=LayerChoice.NONE),
    )
    # pix2pix-like crops of aligned pairs. `iterations` is replaced by the trainer's planned total
    # (its stages' iterations, TrainerSpec.total_iterations) unless a config file or flag sets it.
    loop_presets = {
        "small": {"size": 64, "batch": 4, "iterations": 5_000, "checkpoint_every": 250, "validate_every": 250},
        "paper": {"size": 256, "batch": 1, "iterations": 1_000_000, "checkpoint_every": 10_000,
                  "validate_every": 10_000},
    }

    def read_inputs(self, inputs: Mapping[str, Any], loop: Mapping[str, Any], chosen: Collection[str]) -> DataSettings:
        from trainers.datasets import PairedFolders

        found = PairedFolders(inputs["pairs_a"], inputs.get("pairs_b"), size=None, verify=False, cache_bytes=0)
        stages = inputs.get("stages")
        if isinstance(stages, str):
            stages = [name.strip() for name in stages.split(",") if name.strip()]
        return DataSettings(
            inputs={"pairs_a": inputs["pairs_a"], "pairs_b": inputs.get("pairs_b")},
            model={"channels_a": found.channels_a, "channels_b": found.channels_b},
            training_from_inputs={"stages": list(stages)} if stages else {},
        )

    def load(self, inputs: Mapping[str, Any], options: DataOptions) -> LoadedData:
        from trainers.datasets import PairedFolders

        dataset = PairedFolders(
            inputs["pairs_a"], inputs.get("pairs_b"), channels_a=options.model.get("channels_a"),
            channels_b=options.model.get("channels_b"), size=options.size, resize=options.resize,
            flip=options.flip, seed=options.seed,
        )
        record = {"pairs_a": inputs["pairs_a"], "pairs_b": inputs.get("pairs_b"), "pairs": len(dataset)}
        return LoadedData(dataset, first_items(dataset), record)

    def layer_places(self, layers: Mapping[str, Sequence[str]], layers_dir: Path) -> dict[str, list[LayerPlace]]:
        """The same file names in both folders: that is how pairs are matched."""
        return {key: [LayerPlace(layers_dir / key) for _ in names] for key, names in layers.items()}

    def check_layers(self, layers: Mapping[str, Sequence[LayerShape]]) -> None:
        if len(layers["pairs_a"]) != 1 or len(layers["pairs_b"]) != 1:
            raise ValueError("paired training takes one layer of inputs (A) and one of targets (B)")
        (a,), (b,) = layers["pairs_a"], layers["pairs_b"]
        if (a.planes, a.height, a.width) != (b.planes, b.height, b.width):
            raise ValueError(f"paired layers must have equal shapes, pixel for pixel: {a.name} has {a}, "
                             f"{b.name} has {b}")
