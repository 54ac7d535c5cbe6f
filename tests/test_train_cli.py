"""`napari-i2i train` → model file → `napari-i2i translate`, and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from napari_i2i.frontends.cli import main
from napari_i2i.core.model_file import read_model_info

TINY = """
size = 16
batch = 2
log_every = 1
[model]
dim = 8
n_res = 1
{model}
[training]
dis_dim = 8
"""
EXTRA_MODEL = {"munit": "mlp_dim = 16", "unit": "shared_blocks = 1"}


@pytest.fixture
def folders(tmp_path, rng):
    for name, offset in (("a", 0), ("b", 128)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            pixels = rng.integers(offset, offset + 127, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "a", tmp_path / "b", tiny_config(tmp_path, "munit")


def tiny_config(folder, engine):
    config = folder / f"tiny_{engine}.toml"
    config.write_text(TINY.format(model=EXTRA_MODEL[engine]))
    return config


def train(*args, engine="munit"):
    return main(["train", engine, "--device", "cpu", "--quiet", *map(str, args)])


@pytest.mark.parametrize("engine", sorted(EXTRA_MODEL))
def test_train_translate_round_trip_and_resume(folders, tmp_path, capsys, engine):
    a, b, _ = folders
    config = tiny_config(tmp_path, engine)
    run = tmp_path / "run"
    assert train("--domain-a", a, "--domain-b", b, "--out", run, "--config", config, "--iters", 2,
                 engine=engine) == 0
    model = run / "model.safetensors"
    assert capsys.readouterr().out.strip() == str(model)
    info = read_model_info(model)
    assert info.engine == engine
    assert info.trained and info.provenance["training"]["iterations"] == 2
    assert info.config["dim"] == 8 and info.config["channels_a"] == 3
    if engine == "unit":
        assert info.config["shared_blocks"] == 1
    assert main(["translate", str(model), str(a / "0.png"), "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (24, 24, 3)

    assert train("--out", run, "--resume", "--iters", 3, engine=engine) == 0
    assert read_model_info(model).provenance["training"]["iterations"] == 3
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "event" not in r] == [1, 2, 3]  # less the run score's events


def test_gray_folders_make_a_gray_model(tmp_path, rng):
    for name in "ab":
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    run = tmp_path / "run"
    assert train("--domain-a", tmp_path / "a", "--domain-b", tmp_path / "b", "--out", run,
                 "--config", tiny_config(tmp_path, "munit"), "--iters", 1) == 0
    assert read_model_info(run / "model.safetensors").channels == {"a2b": [1, 1], "b2a": [1, 1]}


def test_bad_folders_and_runs_are_named_errors(folders, tmp_path, capsys):
    a, b, config = folders
    (b / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (("--domain-a", a, "--domain-b", b, "--out", tmp_path / "r1", "--config", config), "broken.png"),
        (("--domain-a", empty, "--domain-b", a, "--out", tmp_path / "r2"), "empty"),
        (("--out", tmp_path / "r3", "--resume"), "nothing to resume"),
        (("--domain-a", a, "--out", tmp_path / "r4"), "--domain-b"),
    ]
    for args, message in cases:
        assert train(*args) == 2
        assert message in capsys.readouterr().err
    assert main(["train", "cyclegan", "--domain-a", str(a), "--domain-b", str(a), "--out", str(tmp_path)]) == 2
    assert "no engine named 'cyclegan'" in capsys.readouterr().err



def test_a_resumed_run_ends_where_an_uninterrupted_one_does(folders, tmp_path):
    """Through the CLI: 4 iterations in one go give the same weights as 2, then resume to 4."""
    from safetensors.torch import load_file

    a, b, config = folders
    common = ("--domain-a", a, "--domain-b", b, "--config", config)
    assert train(*common, "--out", tmp_path / "straight", "--iters", 4) == 0
    assert train(*common, "--out", tmp_path / "resumed", "--iters", 2) == 0
    assert train("--out", tmp_path / "resumed", "--resume", "--iters", 4) == 0
    straight, resumed = (load_file(tmp_path / run / "model.safetensors") for run in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_progress_json_lines_stop_file_and_a_vanished_reader(folders, tmp_path):
    """What front ends (the Train widget) rely on: JSON progress, the stop file, and a run
    whose reader went away (napari closed) stopping with a checkpoint instead of crashing."""
    domain_a, domain_b, config = folders

    def start(run_dir, *extra):
        command = [sys.executable, "-m", "napari_i2i", "train", "munit", "--device", "cpu", "--progress-json",
                   "--domain-a", domain_a, "--domain-b", domain_b, "--config", config, "--out", run_dir, *extra]
        return subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    finished = start(tmp_path / "whole", "--iters", 2)
    lines = [json.loads(line) for line in finished.communicate(timeout=120)[0].splitlines()]
    assert finished.returncode == 0
    progress = [r for r in lines if "iteration" in r]  # besides run score records and warnings
    assert [(r["iteration"], r["iterations"]) for r in progress] == [(1, 2), (2, 2)] and "gen" in lines[0]["losses"]
    assert lines[-1] == {"model": str(tmp_path / "whole" / "model.safetensors")}

    stop_file = tmp_path / "stop"
    stopped = start(tmp_path / "stopped", "--iters", 100_000, "--stop-file", stop_file)
    first = json.loads(stopped.stdout.readline())
    assert first["iteration"] == 1
    stop_file.touch()
    rest = [json.loads(line) for line in stopped.communicate(timeout=120)[0].splitlines()]
    assert stopped.returncode == 130 and (tmp_path / "stopped" / "checkpoint.pt").is_file()
    # the stop (seen before or after a second iteration): the model so far, marked
    reached = [r for r in (first, *rest) if "iteration" in r][-1]["iteration"]
    assert rest[-1] == {"model": str(tmp_path / "stopped" / "model.safetensors"), "stopped_at": reached,
                        "iterations": 100_000}
    assert read_model_info(tmp_path / "stopped").provenance["training"]["stopped_at"] == reached

    orphaned = start(tmp_path / "orphaned", "--iters", 100_000)
    assert json.loads(orphaned.stdout.readline())["iteration"] == 1
    orphaned.stdout.close()  # as when napari exits mid-run
    assert orphaned.wait(timeout=120) == 130
    assert "Traceback" not in orphaned.stderr.read()
    assert torch.load(tmp_path / "orphaned" / "checkpoint.pt", weights_only=True)["iteration"] >= 1


def test_nproc_relaunches_the_same_arguments(folders, tmp_path):
    """`--nproc N` runs torchrun with the arguments given, less --nproc (defaults left out)."""
    from napari_i2i.frontends.cli import build_parser
    from napari_i2i.frontends.cli.train import command_line

    a, b, config = folders
    argv = ["train", "munit", "--domain-a", str(a), "--domain-b", str(b), "--out", str(tmp_path / "r"), "--config",
            str(config), "--batch", "4", "--seed", "0", "--no-flip", "--checkpoint-minutes", "0", "--quiet",
            "--nproc", "2"]
    args = build_parser("train").parse_args(argv)
    args.nproc = None
    again = build_parser("train").parse_args(["train", *command_line(args)])
    assert vars(again) == vars(args)
    assert "--nproc" not in command_line(args) and "--device" not in command_line(args)
