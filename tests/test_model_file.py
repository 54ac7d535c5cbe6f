"""Model files: round trip, and clear refusals of pickles, corrupt and mismatched files."""

import json
import os
import pickle
import shutil
import struct

import pytest
import torch
from conftest import build_munit
from safetensors.torch import save_file

from napari_i2i.core.bundled_models import STAIN_MODEL, bundled_model, bundled_models
from napari_i2i.core.model_file import (
    ModelFileError,
    convert_model,
    load_model,
    read_model_info,
    save_model,
)


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    engine, model = build_munit(seed=4)
    path = tmp_path / "m.safetensors"
    info = save_model(path, engine, model, provenance={"training": {"iterations": 10}})
    loaded = load_model(path, engine="munit")
    assert loaded.info.engine == "munit" and loaded.info.config == model.config
    assert loaded.info.channels == {"a2b": [3, 3], "b2a": [3, 3]}
    assert loaded.info.domains == ["a", "b"] and loaded.info.format_version == 1
    assert loaded.info.trained and loaded.info.provenance["created_by"].startswith("napari-i2i")
    assert read_model_info(path) == info
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    assert not loaded.model.training
    assert not list(tmp_path.glob("*.tmp"))


def test_untrained_weights_say_so_and_fp16_halves_the_file(tmp_path):
    engine, model = build_munit()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_model(full, engine, model)
    save_model(half, engine, model, dtype=torch.float16)
    assert not read_model_info(full).trained
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert next(loaded.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_pickle_checkpoints_are_refused_without_unpickling(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="pickle-based"):
        load_model(path)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle-based"):
        read_model_info(raw)


def test_truncated_and_corrupt_files(tmp_path, munit_file):
    data = munit_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ModelFileError, match="garbage.safetensors"):
        read_model_info(garbage)
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model_info(tmp_path / "missing.safetensors")


def _rewrite_metadata(source, target, change):
    """Copy a model file with its JSON metadata edited (tensors untouched)."""
    raw = source.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["napari_i2i"])
    change(meta)
    header["__metadata__"]["napari_i2i"] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :])


def test_other_engine_unknown_engine_and_mismatched_config(tmp_path, munit_file):
    with pytest.raises(ModelFileError, match="for engine 'munit', not 'unit'"):
        load_model(munit_file, engine="unit")

    unknown = tmp_path / "unknown.safetensors"
    _rewrite_metadata(munit_file, unknown, lambda m: m.update(engine="cyclegan"))
    with pytest.raises(ModelFileError, match="no engine named 'cyclegan'"):
        load_model(unknown)

    wider = tmp_path / "wider.safetensors"
    _rewrite_metadata(munit_file, wider, lambda m: m["config"].update(dim=32))
    with pytest.raises(ModelFileError, match="do not match the munit config.*wrong shape"):
        load_model(wider)

    deeper = tmp_path / "deeper.safetensors"
    _rewrite_metadata(munit_file, deeper, lambda m: m["config"].update(n_res=3))
    with pytest.raises(ModelFileError, match="missing"):
        load_model(deeper)

    future = tmp_path / "future.safetensors"
    _rewrite_metadata(munit_file, future, lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="newer"):
        read_model_info(future)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, path)
    with pytest.raises(ModelFileError, match="without napari-i2i metadata"):
        read_model_info(path)


def _default_file_mode(folder):
    probe = folder / "probe"
    probe.touch()
    return probe.stat().st_mode & 0o777


def test_model_files_get_the_usual_permissions(tmp_path, munit_file):
    """Not mkstemp's 0600: model files are shared, bundled ones installed for all users."""
    assert munit_file.stat().st_mode & 0o777 == _default_file_mode(tmp_path)


def test_convert_to_fp16_with_a_name_keeps_the_weights_and_provenance(tmp_path):
    engine, model = build_munit(seed=2)
    source = tmp_path / "model.safetensors"
    save_model(source, engine, model, provenance={"training": {"iterations": 5}})
    half = tmp_path / "half.safetensors"
    info = convert_model(source, half, dtype=torch.float16, display_name="Stain", description="IHC to H&E")

    assert read_model_info(half) == info
    assert (info.display_name, info.description) == ("Stain", "IHC to H&E")
    assert info.provenance["training"] == {"iterations": 5}
    assert info.provenance["converted"]["dtype"] == "float16"
    assert info.provenance["converted"]["from"] == "model.safetensors"
    assert half.stat().st_size < 0.6 * source.stat().st_size
    loaded = load_model(half)
    for name, tensor in model.state_dict().items():
        restored = loaded.model.state_dict()[name]
        assert restored.dtype == tensor.dtype  # fp16 storage, fp32 in memory
        torch.testing.assert_close(restored, tensor.to(torch.float16).float())

    again = convert_model(half, tmp_path / "again.safetensors")  # None keeps name and description
    assert (again.display_name, again.description) == ("Stain", "IHC to H&E")


def test_the_bundled_stain_model_is_listed_with_its_name_and_loads():
    stain = bundled_model(STAIN_MODEL)
    assert stain in bundled_models()
    assert stain.path.name == "stain_munit.safetensors"
    assert stain.display_name == stain.info.display_name and stain.display_name
    assert stain.description == stain.info.description and stain.description
    assert stain.info.engine == "munit" and stain.info.trained
    assert stain.info.provenance["converted"]["dtype"] == "float16"
    loaded = load_model(stain.path, engine="munit")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert (stain.path.stat().st_mode & 0o444) == 0o444  # readable by every user once installed

    with pytest.raises(ModelFileError, match="no bundled model 'nope'.*stain_munit"):
        bundled_model("nope")


def test_an_unreadable_bundled_file_is_skipped_with_a_warning(tmp_path, munit_file):
    folder = tmp_path / "bundled"
    folder.mkdir()
    os.link(munit_file, folder / "good.safetensors")
    (folder / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.warns(UserWarning, match="skipping a bundled model: .*broken.safetensors"):
        models = bundled_models(folder)
    assert [model.key for model in models] == ["good"]
    assert models[0].display_name == "good"  # no name in the metadata: the file name
    assert "munit model good.safetensors" in models[0].description
    with (
        pytest.warns(UserWarning, match="broken.safetensors"),
        pytest.raises(ModelFileError, match=r"no bundled model 'stain_munit'.*\(bundled: good\)"),
    ):
        bundled_model("stain_munit", folder)


def test_a_run_folder_stands_for_its_model_file(tmp_path, munit_file):
    """Every front end takes a training run's folder: its model.safetensors; a run with only a
    checkpoint, or a folder of something else, says what is missing."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(munit_file, run / "model.safetensors")
    assert read_model_info(run) == read_model_info(munit_file)
    assert load_model(run).path == run / "model.safetensors"

    (run / "model.safetensors").unlink()
    (run / "checkpoint.pt").write_bytes(b"never read here")
    (run / "run.json").write_text('{"engine": "unit"}')
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ModelFileError, match=r"run: a training run without a model yet \(only checkpoint.pt\): "
                       r"`napari-i2i train unit --out .*run --resume` finishes it, and stopping a run"):
        load_model(run)
    assert (run / "checkpoint.pt").read_bytes() == before
    with pytest.raises(ModelFileError, match=r"a folder without a model file \(model.safetensors\)"):
        read_model_info(tmp_path)
