"""Training never loses work and never shows a traceback: bad checkpoints, moved run folders,
checkpoints by time, a stop that leaves a model, skipped files, help, plain progress lines, and
`napari-i2i train --help` without torch. Every case checks that no input file changed."""

import hashlib
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from napari_i2i.core.model_file import read_model_info
from napari_i2i.frontends.cli import main
from trainers import loop as loop_module
from trainers.loop import CheckpointError
from trainers.run import make_settings, train as train_run

TINY = "size = 16\nbatch = 2\nlog_every = 1\n[model]\ndim = 8\nn_res = 1\nmlp_dim = 16\n[training]\ndis_dim = 8\n"
TINY_SETTINGS = {"size": 16, "batch": 2, "log_every": 1, "model": {"dim": 8, "n_res": 1, "mlp_dim": 16},
                 "training": {"dis_dim": 8}}


def digests(*folders):
    """SHA-256 of every file under *folders*: inputs must come out of every case unchanged."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def data(tmp_path, rng):
    """Folders a and b of three 20² RGB images and a tiny config, under tmp_path/data."""
    root = tmp_path / "data"
    for name in "ab":
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "tiny.toml").write_text(TINY)
    return root


def train(*args):
    return main(["train", "munit", "--device", "cpu", "--quiet", *map(str, args)])


def new_run(data, run, *extra):
    return train("--domain-a", data / "a", "--domain-b", data / "b", "--config", data / "tiny.toml",
                 "--out", run, *extra)


def one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-i2i: error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err
    return err


# --- 1. checkpoints that are not --------------------------------------------------------------


class RunsCode:
    """A pickle that would run code when loaded without weights_only (it must not)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "code-running pickle"])
def test_a_bad_checkpoint_is_one_line_and_runs_nothing(data, tmp_path, capsys, recwarn, damage):
    run = tmp_path / "run"
    assert new_run(data, run, "--iters", 1) == 0
    checkpoint = run / "checkpoint.pt"
    marker = tmp_path / "code-ran"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    elif damage == "random bytes":
        checkpoint.write_bytes(np.random.default_rng(1).bytes(4096))
    else:
        checkpoint.write_bytes(pickle.dumps({"iteration": RunsCode(marker)}))
    capsys.readouterr()
    before = digests(data, run)
    assert train("--out", run, "--resume", "--iters", 2) == 2
    err = one_error_line(capsys, str(checkpoint), "not a readable checkpoint")
    assert "weights_only" not in err
    assert not marker.exists()
    assert [str(w.message) for w in recwarn] == []  # nothing else on standard error either
    assert digests(data, run) == before


def test_a_checkpoint_of_other_networks_is_named(data, tmp_path):
    run = tmp_path / "run"
    assert new_run(data, run, "--iters", 1) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["modules"] = {name: {} for name in state["modules"]}
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="checkpoint.pt: a checkpoint that does not fit this run"):
        train_run(run, resume=True, iterations=2)


def test_a_run_killed_hard_resumes_bit_for_bit(data, tmp_path):
    """kill -9 (no handler runs): the last checkpoint on disk is whole, and resuming from it ends
    where an uninterrupted run does."""
    from safetensors.torch import load_file

    before = digests(data)
    command = [sys.executable, "-m", "napari_i2i", "train", "munit", "--device", "cpu", "--progress-json",
               "--domain-a", data / "a", "--domain-b", data / "b", "--config", data / "tiny.toml",
               "--checkpoint-every", 2, "--iters", 1000, "--out", tmp_path / "killed"]
    killed = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    while json.loads(killed.stdout.readline()).get("iteration") != 3:  # the checkpoint of 2 is on disk
        pass
    killed.kill()
    killed.wait(timeout=60)
    killed.stdout.close()
    assert train("--out", tmp_path / "killed", "--resume", "--iters", 6) == 0
    assert new_run(data, tmp_path / "straight", "--iters", 6) == 0
    resumed, straight = (load_file(tmp_path / run / "model.safetensors") for run in ("killed", "straight"))
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert digests(data) == before


# --- 2. a run folder moved with its data ------------------------------------------------------


def test_a_run_moved_with_its_data_resumes_and_missing_data_is_named(data, tmp_path, capsys):
    run = data / "runs" / "r"
    assert new_run(data, run, "--iters", 1) == 0
    stored = json.loads((run / "run.json").read_text())
    assert stored["inputs_relative"] == {"domain_a": "../../a", "domain_b": "../../b"}
    moved = tmp_path / "elsewhere"
    shutil.move(data, moved)
    before = digests(moved)
    assert train("--out", moved / "runs" / "r", "--resume", "--iters", 2) == 0
    assert json.loads((moved / "runs" / "r" / "run.json").read_text())["inputs"]["domain_a"] == str(moved / "a")
    after = digests(moved)
    assert {k: v for k, v in after.items() if "/runs/" not in k} == {k: v for k, v in before.items() if "/runs/" not in k}

    shutil.rmtree(moved / "b")
    capsys.readouterr()
    assert train("--out", moved / "runs" / "r", "--resume", "--iters", 3) == 2
    one_error_line(capsys, "the --domain-b folder", str(moved / "b"), "../../b relative to the run folder")


# --- 3. checkpoints by time --------------------------------------------------------------------


def test_checkpoints_come_by_time_too(data, tmp_path, monkeypatch):
    """An hour per iteration on the clock the loop reads: every iteration is past 5 minutes."""
    clock = iter(range(0, 10**6, 3600))
    monkeypatch.setattr(loop_module.time, "monotonic", lambda: next(clock))
    saved = []
    original = loop_module.TrainLoop.save_checkpoint
    monkeypatch.setattr(loop_module.TrainLoop, "save_checkpoint", lambda self: saved.append(self.iteration) or original(self))
    settings = make_settings("munit", "small", {"domain_a": data / "a", "domain_b": data / "b"},
                             config=json.loads(json.dumps(TINY_SETTINGS)), overrides={"iterations": 3})
    assert (settings.checkpoint_every, settings.checkpoint_minutes) == (500, 5.0)
    train_run(tmp_path / "timed", settings)
    assert saved == [1, 2, 3]
    saved.clear()
    settings.checkpoint_minutes = 0  # off: only the final one
    train_run(tmp_path / "untimed", settings)
    assert saved == [3]


def test_checkpoint_flags_are_stored_and_may_change_on_resume(data, tmp_path):
    run = tmp_path / "run"
    before = digests(data)
    assert new_run(data, run, "--iters", 1, "--checkpoint-every", 7, "--checkpoint-minutes", 0.5) == 0
    stored = json.loads((run / "run.json").read_text())
    assert (stored["checkpoint_every"], stored["checkpoint_minutes"]) == (7, 0.5)
    assert train("--out", run, "--resume", "--iters", 2, "--checkpoint-minutes", 0) == 0
    assert json.loads((run / "run.json").read_text())["checkpoint_minutes"] == 0
    assert digests(data) == before


# --- 4. a stop leaves a model -------------------------------------------------------------------


def test_a_stopped_run_writes_the_model_so_far_and_translate_takes_the_run_folder(data, tmp_path, capsys):
    settings = make_settings("munit", "small", {"domain_a": data / "a", "domain_b": data / "b"},
                             config=json.loads(json.dumps(TINY_SETTINGS)), overrides={"iterations": 50})
    run = tmp_path / "run"
    before = digests(data)
    calls = iter(range(100))
    assert train_run(run, settings, should_stop=lambda: next(calls) >= 2) is None
    training = read_model_info(run).provenance["training"]
    assert (training["iterations"], training["stopped_at"], training["planned_iterations"]) == (2, 2, 50)
    out = tmp_path / "out.png"
    assert main(["translate", str(run), str(data / "a" / "0.png"), "-o", str(out), "--quiet"]) == 0
    assert out.is_file() and digests(data) == before

    (run / "model.safetensors").unlink()  # a run that only has its checkpoint
    capsys.readouterr()
    assert main(["translate", str(run), str(data / "a" / "0.png"), "-o", str(out), "--quiet"]) == 2
    one_error_line(capsys, "a training run without a model yet", f"napari-i2i train munit --out {run} --resume")


def test_a_run_stopped_before_its_first_iteration_writes_no_model(data, tmp_path):
    settings = make_settings("munit", "small", {"domain_a": data / "a", "domain_b": data / "b"},
                             config=json.loads(json.dumps(TINY_SETTINGS)), overrides={"iterations": 5})
    assert train_run(tmp_path / "run", settings, should_stop=lambda: True) is None
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


# --- 5. files that are not images -----------------------------------------------------------------


def test_files_that_are_not_images_are_named_in_one_warning(data, tmp_path):
    for i in range(12):
        (data / "a" / f"notes{i:02d}.txt").write_text("not an image")
    before = digests(data)
    with pytest.warns(UserWarning, match=r"12 file\(s\) skipped.*a/notes00.txt.*and 2 more") as caught:
        settings = make_settings("munit", "small", {"domain_a": data / "a", "domain_b": data / "b"},
                                 config=json.loads(json.dumps(TINY_SETTINGS)), overrides={"iterations": 1})
    assert len([w for w in caught if "skipped" in str(w.message)]) == 1
    assert settings.model["channels_a"] == 3 and digests(data) == before


# --- 6. help and flags for settings that errors mention ---------------------------------------------


def test_every_train_flag_has_help_and_the_device_help_names_every_choice():
    import argparse

    from napari_i2i.core.device import DEVICE_CHOICES
    from napari_i2i.frontends.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    (subparser,) = parser._subparsers._group_actions[0].choices.values()
    missing = [action.dest for action in subparser._actions if not (action.help or "").strip()]
    assert missing == []
    assert all(choice in train_cli.DEVICE_HELP for choice in DEVICE_CHOICES)


def test_resize_and_no_flip_flags_and_the_message_that_names_them(data, tmp_path, capsys):
    before = digests(data)
    assert new_run(data, tmp_path / "r1", "--size", 32, "--iters", 1) == 2
    err = capsys.readouterr().err  # a dataset error: a summary line, then one line per image
    assert err.startswith("napari-i2i: error: ") and "0.png: 20×20 pixels" in err and "upscale with --resize 32" in err
    assert new_run(data, tmp_path / "r2", "--size", 32, "--resize", 32, "--no-flip", "--iters", 1) == 0
    stored = json.loads((tmp_path / "r2" / "run.json").read_text())
    assert (stored["resize"], stored["flip"]) == (32, False)
    assert train("--out", tmp_path / "r2", "--resume", "--size", 16) == 2
    one_error_line(capsys, "--size cannot change a run being resumed")
    assert digests(data) == before


# --- 7. progress when standard error is not a terminal ------------------------------------------------


def test_progress_is_plain_lines_off_a_terminal_and_absent_before_a_data_error(data, tmp_path, capsys):
    before = digests(data)
    args = ["train", "munit", "--device", "cpu", "--domain-a", str(data / "a"), "--domain-b", str(data / "b"),
            "--config", str(data / "tiny.toml"), "--iters", "3"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err  # pytest's capture is no terminal
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("training munit: ")]  # not the run score's
    assert lines[0].startswith("training munit: iteration 1/3, ") and ", gen " in lines[0]
    assert lines[-1].startswith("training munit: iteration 3/3, ") and " it/s" in lines[-1]
    assert len(lines) == 2  # the first and the last: the next is due 10 s after the first

    (data / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-i2i: error: ") and "training munit" not in err and "broken.png" in err
    (data / "b" / "broken.png").unlink()
    assert digests(data) == before


# --- 8. train --help without torch -------------------------------------------------------------------


def test_train_help_imports_no_torch():
    probe = ("import sys\nfrom napari_i2i.frontends.cli import main\ntry:\n    main(['train', '--help'])\n"
             "except SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "--domain-a" in result.stdout and "--checkpoint-minutes" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "NO TORCH", result.stderr
