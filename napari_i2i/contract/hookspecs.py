"""Hook specifications: the contract between napari-i2i and engine plugins.

A plugin is any module named by an entry point in the group
``napari_i2i.engines`` (see :data:`ENTRY_POINT_GROUP`: engines and trainers) or
``napari_i2i.data_kinds`` (:data:`DATA_KIND_ENTRY_POINT_GROUP`: kinds of training
data, loaded on their own so ``napari-i2i train`` can build its flags without
importing torch or any engine). napari-i2i imports each such module in
isolation, registers it with a :class:`pluggy.PluginManager` for the project
``napari_i2i`` and calls the hooks of its group on it. The built-in engines
(``engines.munit`` …) are registered the very same way::

    # pyproject.toml of a third-party engine
    [project.entry-points."napari_i2i.engines"]
    my_engine = "my_package.i2i_plugin"
    [project.entry-points."napari_i2i.data_kinds"]   # only for a plugin with data kinds
    my_kinds = "my_package.i2i_kinds"

    # my_package/i2i_plugin.py
    from napari_i2i import hookimpl

    @hookimpl
    def i2i_register_engines(registry):
        registry.add(MyEngine())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from napari_i2i.contract.registry import EngineRegistry

PROJECT_NAME = "napari_i2i"
ENTRY_POINT_GROUP = "napari_i2i.engines"  # i2i_register_engines, i2i_register_trainers
DATA_KIND_ENTRY_POINT_GROUP = "napari_i2i.data_kinds"  # i2i_register_data_kinds

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def i2i_register_engines(registry: EngineRegistry) -> None:
    """Add this plugin's engines to *registry* with ``registry.add(engine)``.

    Called once per plugin when the registry loads. Registration is atomic per
    plugin: if this hook raises, or adds an engine whose name is already taken,
    none of the plugin's engines are kept and the error is recorded in
    ``registry.load_errors`` (shown by ``napari-i2i engines``), while every
    other plugin still loads.

    An engine is an :class:`napari_i2i.contract.engine_api.Engine`: pure torch, tensors
    in and tensors out, no Qt and no napari imports.
    """


@hookspec
def i2i_register_trainers(registry: EngineRegistry) -> None:
    """Add trainers with ``registry.add_trainer(trainer)``.

    A trainer object names the engine it trains (``trainer.engine``) and
    tells the training front ends what data it needs; see
    :class:`napari_i2i.contract.trainer_api.TrainerSpec`. Registration follows the same rules as
    :func:`i2i_register_engines` (atomic per plugin, duplicates rejected);
    with a trainer registered, ``napari-i2i train ENGINE`` works for it.
    """


@hookspec
def i2i_register_data_kinds(registry: EngineRegistry) -> None:
    """Add kinds of training data with ``registry.add_data_kind(kind)``.

    A kind is a :class:`napari_i2i.contract.trainer_api.DataKind`: the inputs it
    takes (command-line flags, Train-widget layer choosers), the loop presets,
    and how settings, dataset and provenance are made from the inputs. A
    trainer names the kind it trains on in ``TrainerSpec.data``; the kind may
    come from another plugin. Called on the modules of the entry-point group
    ``napari_i2i.data_kinds`` only; keep such a module cheap to import (torch
    inside the methods that need it), as ``napari-i2i train --help`` loads it.
    Registration follows the same rules as
    :func:`i2i_register_engines` (atomic per plugin, duplicate names rejected).
    """
