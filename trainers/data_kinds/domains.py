"""One folder of domain subfolders (multi-domain translation: the ``unified`` engine).

The layout is FUNIT's class folders (one subfolder per domain, named after it), read by the same
dataset; every domain is trained on, and the domain names go into the model's config, so its
directions are ``to_<name>``. Items are a source image of a random domain and a reference image
of a random target domain, with their domain indices.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from napari_i2i.contract.trainer_api import DataKind, DataOptions, DataRole, DataSettings, LayerShape, LoadedData
from trainers.data_kinds.classes import ClassFoldersKind

VALIDATION_ITEMS = 4


class DomainFoldersKind(DataKind):
    name = "domains"
    description = "one folder of domain subfolders, two or more (--domains DIR)"
    roles = (
        DataRole("domains", "--domains", "one subfolder of images per domain (two or more); the subfolders' "
                 "names are the domains' names", label="Domain layers",
                 tooltip="one domain per layer (at least two), named after the layer; a stack's planes are "
                 "that domain's images"),
    )
    loop_presets = {
        "small": {"size": 64, "batch": 4, "iterations": 5_000, "checkpoint_every": 500, "validate_every": 500},
        "paper": {"size": 256, "batch": 8, "iterations": 100_000, "checkpoint_every": 5_000,
                  "validate_every": 5_000},
    }
    layer_places = ClassFoldersKind.layer_places  # one subfolder per layer, named after it

    def read_inputs(self, inputs: Mapping[str, Any], loop: Mapping[str, Any], chosen: Collection[str]) -> DataSettings:
        """The model's ``channels`` and ``domains`` (the subfolders' names) from the data."""
        from trainers.datasets import ClassFolders  # data kinds are cheap to import: torch only to read data

        found = ClassFolders(inputs["domains"], size=None, verify=False, cache_bytes=0)  # headers only
        check_domain_count(inputs["domains"], found.classes)
        return DataSettings(inputs={"domains": inputs["domains"]},
                            model={"channels": found.channels, "domains": list(found.classes)})

    def load(self, inputs: Mapping[str, Any], options: DataOptions) -> LoadedData:
        """Random (source, reference) pairs over every domain; the validation batch is the first items."""
        import torch

        from trainers.class_folders import ClassPairs, ClassSubset
        from trainers.datasets import ClassFolders, DatasetError

        folders = ClassFolders(inputs["domains"], channels=options.model.get("channels"), size=options.size,
                               resize=options.resize, flip=options.flip, seed=options.seed)
        check_domain_count(inputs["domains"], folders.classes)
        expected = options.model.get("domains")
        if expected is not None and list(expected) != folders.classes:
            raise DatasetError(f"{inputs['domains']}: the domains are {', '.join(folders.classes)}, but the "
                               f"model's are {', '.join(expected)} (did the subfolders change since the run "
                               "started?)")
        dataset = ClassPairs(ClassSubset(folders, folders.classes), seed=options.seed)
        items = [dataset[i] for i in range(min(VALIDATION_ITEMS, len(dataset)))]
        validation = tuple((torch.stack([item[part][0] for item in items]),
                            torch.tensor([item[part][1] for item in items])) for part in (0, 1))
        record = {"domains_dir": inputs["domains"], "domains": folders.classes, "images": folders.counts}
        return LoadedData(dataset, validation, record)

    def check_layers(self, layers: Mapping[str, Sequence[LayerShape]]) -> None:
        if len(layers["domains"]) < 2:
            raise ValueError("multi-domain training translates between domains: choose at least two domain "
                             "layers (one domain per layer, its planes the domain's images)")


def check_domain_count(root: str, domains: Sequence[str]) -> None:
    from trainers.datasets import DatasetError

    if len(domains) < 2:
        raise DatasetError(f"{root}: multi-domain training needs two or more domain subfolders, found "
                           f"{len(domains)} ({', '.join(domains)})")
