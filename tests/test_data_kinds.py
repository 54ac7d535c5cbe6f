"""Data kinds as plugin objects: registration rules, run.json of the previous version, and a
third-party kind (tests/plugins/i2i_mirrored_plugin.py) trained through the CLI and the Train
widget without any change to napari-i2i."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_i2i.contract.registry import (
    DuplicateEngineError,
    EngineRegistry,
    UnknownDataKindError,
    data_kind_registry,
    default_registry,
)
from napari_i2i.core.model_file import read_model_info
from trainers.data_kinds.unpaired import UnpairedKind
from trainers.run import RUN_FILE, make_settings, train

PLUGIN = Path(__file__).parent / "plugins" / "i2i_mirrored_plugin.py"
TINY = {"size": 16, "batch": 2, "log_every": 1, "model": {"dim": 8, "n_res": 1, "mlp_dim": 16},
        "training": {"dis_dim": 8}}
TINY_TOML = "size = 16\nbatch = 2\nlog_every = 1\n[model]\ndim = 8\nn_res = 1\nmlp_dim = 16\n[training]\ndis_dim = 8\n"


def write_images(folder, rng, count=3, size=20):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def mirrored_site(tmp_path, monkeypatch):
    """The test plugin installed as a third-party distribution: a dist-info with its entry point,
    on sys.path and PYTHONPATH (for child processes); the default registry reloaded with it."""
    site = tmp_path / "site"
    info = site / "i2i_mirrored-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: i2i-mirrored\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[napari_i2i.data_kinds]\nmirrored = i2i_mirrored_plugin\n\n"
                                           "[napari_i2i.engines]\nmirrored = i2i_mirrored_plugin\n")
    shutil.copy(PLUGIN, site / PLUGIN.name)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    importlib.invalidate_caches()
    default_registry.cache_clear()
    data_kind_registry.cache_clear()
    yield site
    default_registry.cache_clear()
    data_kind_registry.cache_clear()
    sys.modules.pop("i2i_mirrored_plugin", None)


BUILTIN_KINDS = {"classes", "paired", "unpaired"}


def test_builtin_kinds_come_through_the_entry_point():
    registry = EngineRegistry()
    registry.load_plugins()
    assert BUILTIN_KINDS <= {kind.name for kind in registry.data_kinds()}
    assert {registry.trainer_data_kind(engine).name for engine in ("munit", "funit")} == {"unpaired", "classes"}


def test_data_kinds_load_alone_without_engines():
    """What `napari-i2i train --help` builds its flags from: the data-kind group only."""
    registry = EngineRegistry()
    registry.load_data_kinds()
    assert BUILTIN_KINDS <= {kind.name for kind in registry.data_kinds()}
    assert registry.names() == [] and registry.trainable() == [] and registry.load_errors == []


def test_an_engine_plugin_with_kinds_outside_the_data_kind_group_is_a_load_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    shutil.copy(PLUGIN, tmp_path / "i2i_kinds_misplaced.py")
    entry = importlib.metadata.EntryPoint("misplaced", "i2i_kinds_misplaced", "napari_i2i.engines")
    registry = EngineRegistry()
    try:
        registry.load_plugins([entry])
    finally:
        sys.modules.pop("i2i_kinds_misplaced", None)
    (error,) = registry.load_errors
    assert "name it in the entry-point group 'napari_i2i.data_kinds'" in error.message
    assert "mirror_munit" not in registry


def test_duplicate_and_unknown_kinds_are_named_errors():
    registry = EngineRegistry()
    registry.add_data_kind(UnpairedKind())
    with pytest.raises(DuplicateEngineError, match="data kind 'unpaired' is already registered"):
        registry.add_data_kind(UnpairedKind())
    with pytest.raises(UnknownDataKindError, match="no data kind named 'domains' is installed; available: unpaired"):
        registry.data_kind("domains")
    with pytest.raises(TypeError, match="DataKind"):
        registry.add_data_kind(object())


def test_a_plugin_whose_kind_is_taken_keeps_nothing(tmp_path, monkeypatch):
    module = tmp_path / "i2i_copy_kind.py"
    module.write_text(PLUGIN.read_text().replace('name = "mirrored"', 'name = "unpaired"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint("copy", "i2i_copy_kind", "napari_i2i.data_kinds")
    registry = EngineRegistry()
    registry.load_plugins()  # the built-in ones
    try:
        registry.load_plugins([entry])
    finally:
        sys.modules.pop("i2i_copy_kind", None)
    (error,) = registry.load_errors
    assert "data kind 'unpaired' is already registered by plugin 'data_kinds'" in error.message
    assert registry.data_kind("unpaired").description == UnpairedKind.description  # the built-in one kept


def test_settings_hold_absolute_folders_and_a_previous_run_json_resumes(tmp_path, rng, monkeypatch):
    write_images(tmp_path / "a", rng)
    write_images(tmp_path / "b", rng)
    monkeypatch.chdir(tmp_path)
    settings = make_settings("munit", "small", {"domain_a": "a", "domain_b": "b"}, config=json.loads(json.dumps(TINY)),
                             overrides={"iterations": 1})
    assert settings.inputs == {"domain_a": str(tmp_path / "a"), "domain_b": str(tmp_path / "b")}
    run = tmp_path / "run"
    train(run, settings)
    values = json.loads((run / RUN_FILE).read_text())
    legacy = {key: value for key, value in values.items() if key != "inputs"}
    legacy.update(domain_a="a", domain_b="b", classes=None, holdout_classes=[], pairs_a=None, pairs_b=None)
    (run / RUN_FILE).write_text(json.dumps(legacy))  # as the previous version wrote it
    path = train(run, resume=True, iterations=2)
    record = read_model_info(path).provenance["training"]
    assert record["iterations"] == 2 and record["domain_a"] == "a"
    assert json.loads((run / RUN_FILE).read_text())["inputs"] == {"domain_a": "a", "domain_b": "b"}


def test_a_plugin_kind_trains_through_the_cli(mirrored_site, tmp_path, rng):
    images = write_images(tmp_path / "images", rng)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    napari_i2i = [sys.executable, "-m", "napari_i2i", "train"]
    shown = subprocess.run([*napari_i2i, "--help"], capture_output=True, text=True, timeout=120)
    assert "mirrored data" in shown.stdout and "--images DIR" in shown.stdout
    run = tmp_path / "run"
    command = [*napari_i2i, "mirror_munit", "--images", str(images), "--out", str(run), "--config", str(config),
               "--iters", "2", "--device", "cpu", "--progress-json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1] == {"model": str(run / "model.safetensors")}
    info = read_model_info(run / "model.safetensors")
    assert info.engine == "mirror_munit" and info.provenance["training"]["images"] == str(images)

    wrong = subprocess.run([*napari_i2i, "mirror_munit", "--domain-a", str(images), "--out", str(tmp_path / "r2"),
                            "--progress-json"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2
    assert json.loads(wrong.stdout.splitlines()[-1]) == {
        "error": "mirror_munit trains on one folder of images, learnt against their mirror images "
                 "(--images DIR); drop --domain-a"}


def test_a_plugin_kind_trains_through_the_train_widget(mirrored_site, qtbot, tmp_path, make_napari_viewer, rng):
    from napari_i2i.frontends.train_widget import TrainWidget

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    widget.engine.value = "mirror_munit"
    shown = {key for (_, key), chooser in widget.choosers.items() if not chooser.native.isHidden()}
    assert shown == {"images"} and widget.chooser("images").label == "Images to mirror"
    layer = viewer.add_image(rng.random((3, 20, 20), dtype=np.float32), name="cells")
    widget.chooser("images").value = [layer]
    widget.size.value, widget.iterations.value, widget.device.value = 16, 2, "cpu"
    widget.run_folder.value = run = tmp_path / "run"
    widget.train()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=180_000)
    assert widget.status.value == f"done: {run / 'model.safetensors'}", widget.status.value
    assert read_model_info(run / "model.safetensors").engine == "mirror_munit"
    assert sorted(p.name for p in (run / "layers" / "images").iterdir()) == [f"layer00_0000{i}.png" for i in range(3)]
