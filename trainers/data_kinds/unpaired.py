"""Two folders of unpaired images, domains A and B (MUNIT, UNIT)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from napari_i2i.contract.trainer_api import DataKind, DataOptions, DataRole, DataSettings, LoadedData

if TYPE_CHECKING:  # the kinds' modules import torch and the datasets only to read or load data
    import torch
    from torch.utils.data import Dataset


def first_items(dataset: Dataset, count: int = 4) -> tuple[torch.Tensor, ...]:
    """The first *count* items of a dataset of tensor tuples, stacked part by part: a validation batch."""
    import torch

    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return tuple(torch.stack(parts) for parts in zip(*items))


class UnpairedKind(DataKind):
    name = "unpaired"
    description = "two folders of unpaired images (--domain-a DIR --domain-b DIR)"
    roles = (
        DataRole("domain_a", "--domain-a", "images of domain A", label="Domain A layer(s)",
                 tooltip="images of domain A; every plane of a stack is one image"),
        DataRole("domain_b", "--domain-b", "images of domain B", label="Domain B layer(s)",
                 tooltip="images of domain B (unpaired: not the same scenes as A)"),
    )
    loop_presets = {
        "small": dict(size=64, batch=4, iterations=5_000, checkpoint_every=500, validate_every=500),
        "small-colour": dict(size=64, batch=4, iterations=5_000, checkpoint_every=500, validate_every=500),
        "paper": dict(size=256, batch=1, iterations=1_000_000, checkpoint_every=10_000, validate_every=10_000),
    }

    def read_inputs(self, inputs: Mapping[str, Any], loop: Mapping[str, Any], chosen: Collection[str]) -> DataSettings:
        from trainers.datasets import ImageFolder

        channels = {f"channels_{side}": ImageFolder(inputs[f"domain_{side}"], size=None, verify=False,
                                                    cache_bytes=0).channels for side in "ab"}
        return DataSettings(inputs={"domain_a": inputs["domain_a"], "domain_b": inputs["domain_b"]},
                            model=channels)

    def load(self, inputs: Mapping[str, Any], options: DataOptions) -> LoadedData:
        from trainers.datasets import ImageFolder, UnpairedDomains

        common = {"size": options.size, "resize": options.resize, "flip": options.flip, "seed": options.seed}
        dataset = UnpairedDomains(
            ImageFolder(inputs["domain_a"], channels=options.model.get("channels_a"), **common),
            ImageFolder(inputs["domain_b"], channels=options.model.get("channels_b"), **common),
            seed=options.seed,
        )
        record = {"domain_a": inputs["domain_a"], "domain_b": inputs["domain_b"]}
        return LoadedData(dataset, first_items(dataset), record)
