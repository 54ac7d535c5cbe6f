"""A third-party plugin as tests install it: a data kind "mirrored" (one folder; domain A its
images, domain B their left-right mirror images) and an engine that trains on it, MUNIT under
the name "mirror_munit". It uses only what any plugin may: the contract and the trainers."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from engines.munit import MunitEngine
from napari_i2i import hookimpl
from napari_i2i.contract.trainer_api import DataKind, DataRole, DataSettings, LoadedData, TrainerSpec
from trainers.datasets import ImageFolder, UnpairedDomains
from trainers.munit import TRAIN_PRESETS, build_trainer


class Mirrored(Dataset):
    """The images of a dataset, mirrored left to right."""

    def __init__(self, images: Dataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.flip(self.images[index], dims=[-1])


class MirroredKind(DataKind):
    name = "mirrored"
    description = "one folder of images, learnt against their mirror images (--images DIR)"
    roles = (DataRole("images", "--images", "images; domain B is their left-right mirror",
                      label="Images to mirror", tooltip="every plane of a stack is one image"),)
    loop_presets = {"small": dict(size=16, batch=2, iterations=100, checkpoint_every=50, validate_every=50)}

    def read_inputs(self, inputs, loop, chosen):
        channels = ImageFolder(inputs["images"], size=None, verify=False, cache_bytes=0).channels
        return DataSettings(inputs={"images": inputs["images"]},
                            model={"channels_a": channels, "channels_b": channels})

    def load(self, inputs, options):
        def folder(seed):
            return ImageFolder(inputs["images"], channels=options.model["channels_a"], size=options.size,
                               resize=options.resize, flip=False, seed=seed)

        dataset = UnpairedDomains(folder(options.seed), Mirrored(folder(options.seed + 1)), seed=options.seed)
        batch = tuple(torch.stack(parts) for parts in zip(*(dataset[i] for i in range(min(2, len(dataset))))))
        return LoadedData(dataset, batch, {"images": inputs["images"]})


class MirrorMunitEngine(MunitEngine):
    name = "mirror_munit"
    description = "MUNIT trained on images and their mirror images (test plugin)"


@hookimpl
def i2i_register_engines(registry):
    registry.add(MirrorMunitEngine())


@hookimpl
def i2i_register_trainers(registry):
    registry.add_trainer(TrainerSpec(engine="mirror_munit", data="mirrored",
                                     presets={"small": TRAIN_PRESETS["small"]}, build=build_trainer))


@hookimpl
def i2i_register_data_kinds(registry):
    registry.add_data_kind(MirroredKind())
