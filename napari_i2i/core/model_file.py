"""Model files: safetensors weights plus JSON metadata, never a pickle.

One file holds everything: the tensors, and under the safetensors metadata
key ``napari_i2i`` a JSON document with the engine name, its config, the
domains and channels, the format version and how the model was made
(``provenance``: untrained weights say so and front ends warn about them),
plus an optional display name and description for model choosers.

Wherever a model file is taken, a training run's folder is too: its
``model.safetensors`` (written when the run finishes or is stopped).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from napari_i2i import __version__
from napari_i2i.contract.engine_api import Engine, EngineError, TranslationModel
from napari_i2i.contract.registry import EngineRegistry, default_registry
from napari_i2i.core.errors import ModelFileError  # noqa: F401 (re-exported)

FORMAT_VERSION = 1
METADATA_KEY = "napari_i2i"
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".bin"}
# In a training run's folder (trainers.run writes them): its model file, and its checkpoint,
# which is never read here (a model needs the run finished or stopped).
RUN_MODEL_NAME = "model.safetensors"
RUN_CHECKPOINT_NAME = "checkpoint.pt"
RUN_SETTINGS_NAME = "run.json"


@dataclass
class ModelInfo:
    """The JSON part of a model file."""

    engine: str
    config: dict[str, Any]
    domains: list[str]
    channels: dict[str, list[int]]  # direction -> [in, out]
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    display_name: str = ""  # what a model chooser shows; empty: the file name
    description: str = ""  # one or two sentences: what the model translates into what

    @property
    def trained(self) -> bool:
        return bool(self.provenance.get("training"))

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass
class LoadedModel:
    """A model ready to translate: the network, its engine and its file's metadata."""

    path: Path
    info: ModelInfo
    engine: Engine
    model: TranslationModel


def save_model(
    path: str | os.PathLike,
    engine: Engine,
    model: TranslationModel,
    provenance: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    display_name: str = "",
    description: str = "",
) -> ModelInfo:
    """Write *model* atomically (temp file + rename); ``dtype`` e.g. fp16 to halve the size.

    ``provenance`` says how the weights were made; leave out ``"training"``
    for weights that were never trained. Floating-point weights stored as
    ``dtype`` are cast back to float32 by :func:`load_model`.
    """
    capabilities = model.capabilities
    info = ModelInfo(
        engine=engine.name,
        config=dict(model.config),
        domains=list(capabilities.domains),
        channels={name: list(pair) for name, pair in capabilities.directions.items()},
        provenance={
            "created_by": f"napari-i2i {__version__}",
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **(provenance or {}),
        },
        display_name=display_name,
        description=description,
    )
    # A module tied across domains (UNIT's shared blocks) appears under each
    # owner's key; safetensors refuses tensors that share memory, so each key
    # gets its own copy (loading writes the equal copies into the one module).
    tensors = {
        name: (t.to(dtype) if dtype is not None and t.is_floating_point() else t)
        .detach()
        .cpu()
        .clone(memory_format=torch.contiguous_format)
        for name, t in model.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written with open() so the file gets the usual permissions (umask); mkstemp and
    # safetensors' save_file make 0600 files, but model files are shared and bundled
    # ones are installed for every user.
    data = save(tensors, metadata={METADATA_KEY: info.to_json()})
    tmp = path.parent / f"{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return info


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head == b"PK" or path.suffix.lower() in PICKLE_SUFFIXES


def model_path(path: str | os.PathLike) -> Path:
    """*path*, or for a training run's folder its model file; a run with only a checkpoint is a
    :class:`ModelFileError` saying how to get its model."""
    path = Path(path)
    if not path.is_dir():
        return path
    model = path / RUN_MODEL_NAME
    if model.is_file():
        return model
    if (path / RUN_CHECKPOINT_NAME).is_file():
        raise ModelFileError(
            f"{path}: a training run without a model yet (only {RUN_CHECKPOINT_NAME}): "
            f"`napari-i2i train {_run_engine(path)} --out {path} --resume` finishes it, and stopping a run "
            "(Ctrl-C, --stop-file, Cancel) writes the model so far"
        )
    raise ModelFileError(f"{path}: a folder without a model file ({RUN_MODEL_NAME})")


def _run_engine(run_dir: Path) -> str:
    """The engine named in a run folder's settings, for messages; ENGINE when unreadable."""
    try:
        engine = json.loads((run_dir / RUN_SETTINGS_NAME).read_text()).get("engine")
    except (OSError, ValueError, AttributeError):
        return "ENGINE"
    return engine if isinstance(engine, str) else "ENGINE"


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Only the metadata: fast, and enough to set up a front end. *path* may be a run folder."""
    path = model_path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        if _looks_like_pickle(path):
            raise ModelFileError(
                f"{path}: this is a pickle-based PyTorch checkpoint; napari-i2i never unpickles "
                "files (unpickling can run arbitrary code). Use a napari-i2i .safetensors model "
                "file, e.g. one written by `napari-i2i train`."
            ) from None
        raise ModelFileError(
            f"{path}: not a readable safetensors model file (truncated or corrupt?): {error}"
        ) from None
    if METADATA_KEY not in metadata:
        raise ModelFileError(f"{path}: a safetensors file without napari-i2i metadata")
    try:
        raw = json.loads(metadata[METADATA_KEY])
        info = ModelInfo(**raw)
    except (json.JSONDecodeError, TypeError) as error:
        raise ModelFileError(f"{path}: malformed napari-i2i metadata: {error}") from None
    if info.format_version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {info.format_version} is newer than this napari-i2i "
            f"understands ({FORMAT_VERSION}); upgrade napari-i2i"
        )
    return info


def load_model(
    path: str | os.PathLike,
    registry: EngineRegistry | None = None,
    device: torch.device | str = "cpu",
    engine: str | None = None,
) -> LoadedModel:
    """Build the engine's networks from the file's config and load its weights.

    ``engine``, when given, is the engine the caller expects: a file made
    by another engine is refused by name. *path* may be a training run's folder.
    """
    path = model_path(path)
    info = read_model_info(path)
    if engine is not None and info.engine != engine:
        raise ModelFileError(f"{path}: a model for engine {info.engine!r}, not {engine!r}")
    registry = registry or default_registry()
    try:
        engine_impl = registry.get(info.engine)
        model = engine_impl.build(info.config)
    except EngineError as error:
        raise ModelFileError(f"{path}: {error}") from None
    try:
        weights = load_file(path)
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path}: cannot read the weights (truncated?): {error}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(weights[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    )
    if missing or unexpected or mismatched:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                problems.append(f"{label}: {', '.join(items[:3])}{more}")
        raise ModelFileError(
            f"{path}: the weights do not match the {info.engine} config in the file — "
            + "; ".join(problems)
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(path=path, info=info, engine=engine_impl, model=model)


def convert_model(
    source: str | os.PathLike,
    target: str | os.PathLike,
    dtype: torch.dtype | None = None,
    display_name: str | None = None,
    description: str | None = None,
) -> ModelInfo:
    """Re-save a model file, e.g. in float16 and with a name and description for choosers.

    The weights go through :func:`load_model` (so the file is checked) and
    :func:`save_model`; the provenance is kept and gains a ``"converted"``
    record. ``None`` keeps the file's display name / description.
    """
    loaded = load_model(source)
    info = loaded.info
    converted = {
        "from": Path(source).name,
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
        "by": f"napari-i2i {__version__}",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return save_model(
        target,
        loaded.engine,
        loaded.model,
        provenance={**info.provenance, "converted": converted},
        dtype=dtype,
        display_name=info.display_name if display_name is None else display_name,
        description=info.description if description is None else description,
    )
