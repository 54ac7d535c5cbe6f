"""The engine registry: every engine plugin, each loaded in isolation, with its trainers and data kinds.

Importing it costs no torch: the engine API (which needs torch) is imported when an engine is
added, so :func:`data_kind_registry` (the data kinds alone, from their own
entry-point group) serves ``napari-i2i train --help`` without loading torch or any engine.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import pluggy

from napari_i2i.contract import hookspecs
from napari_i2i.contract.errors import DuplicateEngineError, UnknownDataKindError, UnknownEngineError
from napari_i2i.contract.trainer_api import DataKind

if TYPE_CHECKING:
    from napari_i2i.contract.engine_api import Engine

BUILTIN_SOURCE = "napari-i2i"
ENGINE_HOOKS = ("i2i_register_engines", "i2i_register_trainers")  # of the napari_i2i.engines group
DATA_KIND_HOOKS = ("i2i_register_data_kinds",)  # of the napari_i2i.data_kinds group


@dataclass(frozen=True)
class PluginSource:
    """Where an engine came from: entry point name, module and distribution."""

    entry_point: str
    module: str
    distribution: str

    def __str__(self) -> str:
        return f"plugin {self.entry_point!r} ({self.module}, from {self.distribution})"


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be loaded, and why."""

    source: PluginSource
    message: str
    details: str  # the traceback, for bug reports

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class EngineRegistry:
    """Engines, trainers (by engine) and data kinds by name, with the plugin each came from
    and the plugins that failed."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Engine, PluginSource | None]] = {}
        self._trainers: dict[str, tuple[Any, PluginSource | None]] = {}
        self._data_kinds: dict[str, tuple[DataKind, PluginSource | None]] = {}
        self._staged: dict[str, Engine] | None = None
        self._staged_trainers: dict[str, Any] | None = None
        self._staged_data_kinds: dict[str, DataKind] | None = None
        self.load_errors: list[LoadError] = []

    def add(self, engine: Engine) -> None:
        """Register *engine*; called by plugins from their ``i2i_register_engines``."""
        from napari_i2i.contract.engine_api import Engine

        if not isinstance(engine, Engine):
            raise TypeError(
                f"registry.add() takes an napari_i2i.contract.engine_api.Engine, got {type(engine).__name__}"
            )
        self._register(self._engines, self._staged, engine.name, engine, "engine name")

    def add_trainer(self, trainer: Any) -> None:
        """Register a trainer (a ``TrainerSpec``) for ``trainer.engine``."""
        name = getattr(trainer, "engine", None)
        if not isinstance(name, str):
            raise TypeError("registry.add_trainer() takes an object with an `engine` name")
        self._register(self._trainers, self._staged_trainers, name, trainer, "a trainer for")

    def add_data_kind(self, kind: DataKind) -> None:
        """Register a kind of training data; called by plugins from ``i2i_register_data_kinds``."""
        if not isinstance(kind, DataKind):
            raise TypeError(
                f"registry.add_data_kind() takes a napari_i2i.contract.trainer_api.DataKind, got {type(kind).__name__}"
            )
        self._register(self._data_kinds, self._staged_data_kinds, kind.name, kind, "data kind")

    @staticmethod
    def _register(
        table: dict[str, tuple[Any, PluginSource | None]],
        staged: dict[str, Any] | None,
        name: str,
        item: Any,
        what: str,
    ) -> None:
        """Into ``staged`` while a plugin loads (committed if it all succeeds), else ``table``."""
        taken_by = table.get(name)
        if taken_by is not None or (staged is not None and name in staged):
            first = str(taken_by[1]) if taken_by else "the same plugin"
            raise DuplicateEngineError(f"{what} {name!r} is already registered by {first}")
        if staged is not None:
            staged[name] = item
        else:
            table[name] = (item, None)

    def trainer(self, name: str) -> Any:
        """The trainer of engine *name*."""
        self.get(name)
        try:
            return self._trainers[name][0]
        except KeyError:
            trainable = ", ".join(sorted(self._trainers)) or "none"
            raise UnknownEngineError(
                f"engine {name!r} has no trainer installed; trainable engines: {trainable}"
            ) from None

    def trainable(self) -> list[str]:
        return sorted(self._trainers)

    def data_kind(self, name: str) -> DataKind:
        """The data kind *name*."""
        try:
            return self._data_kinds[name][0]
        except KeyError:
            known = ", ".join(sorted(self._data_kinds)) or "none"
            raise UnknownDataKindError(f"no data kind named {name!r} is installed; available: {known}") from None

    def data_kinds(self) -> list[DataKind]:
        """Every registered data kind, by name."""
        return [self._data_kinds[name][0] for name in sorted(self._data_kinds)]

    def trainer_data_kind(self, engine: str) -> DataKind:
        """The data kind the trainer of *engine* trains on."""
        return self.data_kind(self.trainer(engine).data)

    def get(self, name: str) -> Engine:
        try:
            return self._engines[name][0]
        except KeyError:
            known = ", ".join(sorted(self._engines)) or "none"
            hint = f" ({len(self.load_errors)} plugin(s) failed to load)" if self.load_errors else ""
            raise UnknownEngineError(
                f"no engine named {name!r} is installed; available: {known}{hint}"
            ) from None

    def source(self, name: str) -> PluginSource | None:
        self.get(name)
        return self._engines[name][1]

    def names(self) -> list[str]:
        return sorted(self._engines)

    def __iter__(self) -> Iterator[Engine]:
        return (self._engines[name][0] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._engines

    def load_plugins(
        self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
    ) -> None:
        """Import and register each entry point on its own: those of ``napari_i2i.data_kinds``
        for their data kinds, then those of ``napari_i2i.engines`` for engines and trainers.

        A plugin that fails to import, does not implement the hook correctly,
        raises while registering or reuses a taken engine name is recorded in
        :attr:`load_errors` with none of its engines kept; the rest still load.
        Built-in engines load first, so their names cannot be taken over.
        """
        if entry_points is None:
            entry_points = [*_group(hookspecs.DATA_KIND_ENTRY_POINT_GROUP), *_group(hookspecs.ENTRY_POINT_GROUP)]
        entry_points = list(entry_points)
        kind_modules = {ep.value for ep in entry_points if ep.group == hookspecs.DATA_KIND_ENTRY_POINT_GROUP}
        for group, hooks in ((hookspecs.DATA_KIND_ENTRY_POINT_GROUP, DATA_KIND_HOOKS),
                             (hookspecs.ENTRY_POINT_GROUP, ENGINE_HOOKS)):
            manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            manager.add_hookspecs(hookspecs)
            for entry_point in sorted((ep for ep in entry_points if ep.group == group), key=_load_order):
                self._load_one(manager, entry_point, hooks, kinds_elsewhere=entry_point.value in kind_modules)

    def load_data_kinds(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
        """Only the data-kind plugins (``napari_i2i.data_kinds``): no engine, no trainer, no torch
        unless a kind's module imports it."""
        if entry_points is None:
            entry_points = _group(hookspecs.DATA_KIND_ENTRY_POINT_GROUP)
        self.load_plugins([ep for ep in entry_points if ep.group == hookspecs.DATA_KIND_ENTRY_POINT_GROUP])

    def _load_one(self, manager: pluggy.PluginManager, entry_point: importlib.metadata.EntryPoint,
                  hooks: tuple[str, ...], kinds_elsewhere: bool) -> None:
        """Load one plugin and call *hooks* on it alone; its registrations are kept only if all succeed."""
        source = PluginSource(
            entry_point=entry_point.name,
            module=entry_point.value,
            distribution=entry_point.dist.name if entry_point.dist else "unknown",
        )
        self._staged, self._staged_trainers, self._staged_data_kinds = {}, {}, {}
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
            implemented = {caller.name for caller in manager.get_hookcallers(plugin) or ()}
            _check_hooks(implemented, hooks, entry_point.group, kinds_elsewhere)
            others = [p for p in manager.get_plugins() if p is not plugin]
            for hook in hooks:
                manager.subset_hook_caller(hook, remove_plugins=others)(registry=self)
        except Exception as error:  # noqa: BLE001 - one broken plugin must not stop the rest
            self._staged = self._staged_trainers = self._staged_data_kinds = None
            self.load_errors.append(
                LoadError(source=source, message=f"{type(error).__name__}: {error}", details=traceback.format_exc())
            )
        else:
            self._commit(source)

    def _commit(self, source: PluginSource) -> None:
        assert self._staged is not None and self._staged_trainers is not None and self._staged_data_kinds is not None
        for name, engine in self._staged.items():
            self._engines[name] = (engine, source)
        for name, trainer in self._staged_trainers.items():
            self._trainers[name] = (trainer, source)
        for name, kind in self._staged_data_kinds.items():
            self._data_kinds[name] = (kind, source)
        self._staged = self._staged_trainers = self._staged_data_kinds = None


def _load_order(entry_point: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
    """Built-in engines first, so a plugin cannot take over their names; then by name."""
    distribution = entry_point.dist.name if entry_point.dist else ""
    return distribution != BUILTIN_SOURCE, distribution, entry_point.name


def _check_hooks(implemented: set[str], hooks: tuple[str, ...], group: str, kinds_elsewhere: bool) -> None:
    """A plugin implements a hook of its group; one of the engines group registering data kinds
    is named in the data-kinds group too (else its kinds would be missing from the CLI's flags)."""
    problem = None
    if hooks == ENGINE_HOOKS and "i2i_register_data_kinds" in implemented and not kinds_elsewhere:
        problem = (f"the module implements i2i_register_data_kinds: name it in the entry-point group "
                   f"{hookspecs.DATA_KIND_ENTRY_POINT_GROUP!r} too (data kinds load on their own there)")
    elif not implemented & set(hooks):
        problem = f"the module implements no napari_i2i hook of the group {group!r} ({', '.join(hooks)})"
    if problem is not None:
        from napari_i2i.contract.engine_api import EngineError

        raise EngineError(problem)


def _group(name: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=name))


@cache
def default_registry() -> EngineRegistry:
    """The registry of all installed plugins (data kinds, engines, trainers), loaded once per process."""
    registry = EngineRegistry()
    registry.load_plugins()
    return registry


@cache
def data_kind_registry() -> EngineRegistry:
    """The installed data kinds alone, loaded once per process: what ``napari-i2i train``'s
    flags are built from, without importing an engine."""
    registry = EngineRegistry()
    registry.load_data_kinds()
    return registry
