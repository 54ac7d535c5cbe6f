"""One folder of class subfolders (FUNIT), with classes held out of training."""

from __future__ import annotations

import re
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


def holdout_of(value: int | str | Sequence[str] | None) -> int | list[str] | None:
    """``--holdout-classes N|NAME,NAME`` as ``trainers.class_folders.split_classes`` takes it: a
    number or names."""
    if isinstance(value, str):
        return int(value) if value.isdigit() else [name for name in value.split(",") if name]
    return value


def folder_name(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique folder name for a layer (class folders are named after layers)."""
    base = re.sub(r"[^\w.-]+", "_", name).strip("._") or "layer"
    unique, number = base, 2
    while unique.lower() in taken:  # case-insensitive file systems
        unique, number = f"{base}_{number}", number + 1
    taken.add(unique.lower())
    return unique


class ClassFoldersKind(DataKind):
    name = "classes"
    description = "one folder of class subfolders (--classes DIR)"
    roles = (
        DataRole("classes", "--classes", "one subfolder of images per class", label="Class layers",
                 tooltip="one class per layer (at least two); a stack's planes are that class's images"),
        DataRole("holdout_classes", "--holdout-classes", "keep N classes (drawn with the seed) or the named "
                 "ones out of training, to try translation into unseen classes", metavar="N|NAME,NAME",
                 required=False, folder=False, layers=LayerChoice.NONE),
    )
    # Whole objects, so images are resized before cropping: the published 128² crops of images
    # whose short side is 140; `small` works on 32² images.
    loop_presets = {
        "small": {"size": 32, "resize": 32, "batch": 4, "iterations": 5_000,
                  "checkpoint_every": 500, "validate_every": 500},
        "small-colour": {"size": 32, "resize": 32, "batch": 4, "iterations": 5_000,
                         "checkpoint_every": 500, "validate_every": 500},
        "paper": {"size": 128, "resize": 140, "batch": 64, "iterations": 100_000,
                  "checkpoint_every": 5_000, "validate_every": 5_000},
    }

    def read_inputs(self, inputs: Mapping[str, Any], loop: Mapping[str, Any], chosen: Collection[str]) -> DataSettings:
        """The model's ``channels`` from the images; ``num_classes`` (the discriminator's outputs)
        is the number of training classes, the others held out (a number drawn with the seed)."""
        from trainers.class_folders import split_classes
        from trainers.datasets import ClassFolders

        resize = {}
        if "resize" not in chosen and loop.get("resize") is not None and loop["resize"] < loop["size"]:
            resize["resize"] = loop["size"]  # a larger crop than the preset's: resize to it, not below
        found = ClassFolders(inputs["classes"], size=None, verify=False, cache_bytes=0)  # headers only
        training_classes, held_out = split_classes(found.classes, holdout_of(inputs.get("holdout_classes")),
                                                   loop.get("seed", 0))
        return DataSettings(inputs={"classes": inputs["classes"], "holdout_classes": held_out},
                            model={"channels": found.channels}, training={"num_classes": len(training_classes)},
                            loop=resize)

    def load(self, inputs: Mapping[str, Any], options: DataOptions) -> LoadedData:
        """Items of the training classes (content image, class example, and a class mate of the
        content image when ``classmate_weight`` > 0: see ``ClassPairs``), and a validation batch ``(content, examples)`` whose
        examples come from the held-out classes when there are any."""
        import torch

        from trainers.class_folders import ClassPairs, ClassSubset, split_classes
        from trainers.datasets import ClassFolders

        folders = ClassFolders(inputs["classes"], channels=options.model.get("channels"), size=options.size,
                               resize=options.resize, flip=options.flip, seed=options.seed)
        held_out = list(inputs.get("holdout_classes") or [])
        training_classes, _ = split_classes(folders.classes, held_out)
        num_classes = options.training.get("num_classes")
        if num_classes is not None and num_classes != len(training_classes):
            raise ValueError(
                f"{inputs['classes']}: {len(training_classes)} training classes, but the settings say "
                f"num_classes = {num_classes} (did the class folders change since the run started?)"
            )
        # class mates only for a trainer that asks for them (FUNIT's class-mate term): one image less per item
        classmates = float(options.training.get("classmate_weight", 0)) > 0
        dataset = ClassPairs(ClassSubset(folders, training_classes), seed=options.seed, classmates=classmates)
        count = min(4, len(dataset))
        content = torch.stack([dataset[i][0][0] for i in range(count)])
        if held_out:  # what FUNIT is for: classes never seen in training
            examples = torch.stack([
                folders.sample(folders.classes.index(held_out[i % len(held_out)]), 1, key=i)[0]
                for i in range(count)
            ])
        else:
            examples = torch.stack([dataset[i][1][0] for i in range(count)])
        record = {"classes_dir": inputs["classes"], "classes": training_classes, "holdout_classes": held_out}
        return LoadedData(dataset, (content, examples), record)

    def layer_places(self, layers: Mapping[str, Sequence[str]], layers_dir: Path) -> dict[str, list[LayerPlace]]:
        """One subfolder per layer, named after it."""
        taken: set[str] = set()
        return {key: [LayerPlace(layers_dir / key / folder_name(name, taken)) for name in names]
                for key, names in layers.items()}

    def check_layers(self, layers: Mapping[str, Sequence[LayerShape]]) -> None:
        if len(layers["classes"]) < 2:
            raise ValueError("few-shot training learns to translate between classes: choose at least two "
                             "class layers (one class per layer, its planes the class's images)")
