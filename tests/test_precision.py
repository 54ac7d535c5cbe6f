"""Precision and compilation for inference: the choice, its numerics, its record, and progress throttling."""

import os

import numpy as np
import pytest
import torch
from conftest import build_munit

import napari_i2i.core.device as device_module
from napari_i2i.core.device import (
    COMPILE_CHOICES, PRECISION_CHOICES, DeviceError, compile_pays, cpu_has_fast_bf16, prepare_compile_cache,
    resolve_precision,
)
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import save_model
from napari_i2i.core.translate import Progress, TranslateOptions, run_to_completion, run_translation, throttled
from napari_i2i.frontends.cli import build_parser, main

CPU = torch.device("cpu")


@pytest.fixture
def fast_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bf16 units."""

    def pretend(has: bool) -> None:
        monkeypatch.setattr(device_module, "cpu_flags", lambda: {"avx2", *(["amx_bf16"] if has else [])})

    return pretend


def test_auto_picks_bf16_only_on_cpus_with_bf16_units(fast_bf16):
    fast_bf16(True)
    assert cpu_has_fast_bf16() == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    fast_bf16(False)
    assert not cpu_has_fast_bf16()
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision(" BF16 ", CPU) == "bf16"  # asked for: emulated, but served
    assert resolve_precision("fp32", CPU) == "fp32"


def test_fp16_on_the_cpu_and_unknown_choices_are_refused():
    with pytest.raises(DeviceError, match="fp16 runs only on a GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(DeviceError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)
    with pytest.raises(DeviceError, match="unknown compile choice"):
        compile_pays("maybe", 10, CPU)


def test_compile_auto_only_for_jobs_that_repay_it():
    assert compile_pays("on", 1, CPU) and not compile_pays("off", 10**12, CPU)
    assert not compile_pays("auto", 512 * 512, CPU)  # seconds of work: a compile would cost more
    assert compile_pays("auto", 64 * 2048 * 2048, CPU)  # a stack of 64 planes of 2048²


def test_compile_cache_is_per_user_unless_chosen(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing dynamo writes
    prepare_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "napari-i2i" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    prepare_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    assert torch._dynamo.config.automatic_dynamic_shapes is False


def translate(loaded, image, **options):
    options = TranslateOptions(**{"direction": "a2b", "n_samples": 2, **options})
    return run_to_completion(run_translation(loaded, [image], options))[0]


def rgb_image(height=150, width=130):
    return ImageData(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8), "x", rgb=True)


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1), ("bf16", 3)])
def test_tiled_equals_whole_image_in_every_precision(tiny_model, precision, tolerance):
    """Grey levels of 8-bit output: fp32 rounds alike (≤ 1); bf16 tiles add rounding (≤ 3)."""
    image = rgb_image()
    whole = translate(tiny_model, image, precision=precision, compile="off", tile=1024)
    tiled = translate(tiny_model, image, precision=precision, compile="off", tile=64)
    assert whole.metadata["precision"] == precision and whole.metadata["compiled"] is False
    difference = np.abs(tiled.data.astype(int) - whole.data.astype(int))
    assert difference.max() <= tolerance
    fp32 = translate(tiny_model, image, precision="fp32", compile="off")
    changed = np.abs(whole.data.astype(int) - fp32.data.astype(int))
    assert (changed.mean() > 0) == (precision == "bf16") and changed.max() <= 4


def test_compiled_equals_eager_and_is_recorded(tiny_model):
    """One small compile (cached per user, so later runs are quick)."""
    image = rgb_image(64, 64)
    eager = translate(tiny_model, image, precision="fp32", compile="off")
    compiled = translate(tiny_model, image, precision="fp32", compile="on")
    assert compiled.metadata["compiled"] is True and compiled.metadata["precision"] == "fp32"
    assert np.abs(compiled.data.astype(int) - eager.data.astype(int)).max() <= 1


def test_windows_that_share_statistics_run_eager_and_say_so(tiny_model):
    compiled = translate(tiny_model, rgb_image(), precision="fp32", compile="on", tile=64)
    assert compiled.metadata["compiled"] is False


def test_progress_is_throttled_but_notices_and_the_result_pass():
    def job():
        yield Progress(0.0, "notice", notice=True)
        for step in range(10):
            yield Progress(step / 10, f"tile {step}")
        return ["result"]

    times = iter([0.0, 0.01, 0.02, 0.15, 0.16, 0.17, 0.3, 0.31, 0.32, 0.33])
    passed, steps = [], throttled(job(), interval=0.1, clock=lambda: next(times))
    while True:
        try:
            passed.append(next(steps).message)
        except StopIteration as finished:
            assert finished.value == ["result"]
            break
    assert passed == ["notice", "tile 0", "tile 3", "tile 6"]


def test_cli_offers_the_core_choices_and_refuses_fp16_on_the_cpu(tmp_path, capsys):
    parser = build_parser("translate")
    (translate,) = [action for action in parser._subparsers._group_actions[0].choices.values()
                    if action.prog.endswith("translate")]
    offered = {action.dest: tuple(action.choices) for action in translate._actions if action.choices}
    assert offered["precision"] == PRECISION_CHOICES and offered["compile"] == COMPILE_CHOICES
    engine, model = build_munit()
    save_model(tmp_path / "m.safetensors", engine, model)
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "in.png")
    code = main(["translate", str(tmp_path / "m.safetensors"), str(tmp_path / "in.png"), "-o",
                 str(tmp_path / "out.png"), "--device", "cpu", "--precision", "fp16", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("precision fp16 runs only on a GPU; on the CPU use bf16 or fp32")
    assert not (tmp_path / "out.png").exists()
