"""Training in two CPU processes (gloo) through torchrun: the same losses as one process with the
same global batch, rank 0 alone writing, a stop reaching every rank, resume after a killed rank,
and a batch that does not divide. Tiny networks, 16² crops, a handful of iterations."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from napari_i2i.core.model_file import read_model_info
from napari_i2i.frontends.cli import main
from trainers.datasets import InfiniteSampler
from trainers.distributed import World

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun's process handling is POSIX here")

MUNIT = """
size = 16
batch = 4
log_every = 1
checkpoint_every = 2
[model]
dim = 8
n_res = 1
mlp_dim = 16
[training]
dis_dim = 8
"""
STEP = """
size = 16
batch = 4
log_every = 1
checkpoint_every = 100
validate_every = 2
precision = "fp32"  # compared with one process to 1e-5: bf16 sums over other batch splits differ more
[model]
dim = 8
n_downsample = 1
n_res = 1
style_encoder_dim = 8
style_downsample = 2
[training]
stages = ["generator"]
generator_iterations = 4
dis_dim = 8
dis_layers = 2
dis_scales = 2
"""
# Two processes against one: the same items in every global batch and, for StEP's deterministic
# generator stage, the same losses up to the order of float sums (measured: ~1e-7 relative).
LOSS_RTOL = 1e-5
TIMEOUT = 180


@pytest.fixture
def data(tmp_path, rng):
    for name, offset in (("a", 0), ("b", 128)):
        (tmp_path / name).mkdir()
        for i in range(4):
            pixels = rng.integers(offset, offset + 127, (24, 24), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    (tmp_path / "munit.toml").write_text(MUNIT)
    (tmp_path / "step.toml").write_text(STEP)
    return tmp_path


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "napari_i2i", "train", *map(str, args)]


def nproc(*args):
    return [sys.executable, "-m", "napari_i2i", "train", "--nproc", "2", *map(str, args)]


def munit_args(data, run, *extra):
    return ["munit", "--device", "cpu", "--domain-a", data / "a", "--domain-b", data / "b",
            "--config", data / "munit.toml", "--out", run, *extra]


def run_to_end(command):
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stdout, done.stderr


def losses(run):
    """The loss lines of the run's log (its run score events left out)."""
    return [record for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())
            if record.get("event") not in ("run_score", "content_lost")]


def test_shares_of_the_ranks_make_the_global_batch():
    for start in (0, 12):
        whole = list(itertools.islice(InfiniteSampler(5, seed=3, start=start), 24))
        shares = [list(itertools.islice(InfiniteSampler(5, 3, start, rank=r, ranks=2, batch=4), 12)) for r in (0, 1)]
        for t in range(6):  # batch t: rank 0's two, then rank 1's two
            assert shares[0][2 * t:2 * t + 2] + shares[1][2 * t:2 * t + 2] == whole[4 * t:4 * t + 4]
    with pytest.raises(ValueError, match="equal share"):
        InfiniteSampler(5, 0, rank=0, ranks=2, batch=3)


def test_two_processes_train_as_one_and_rank_0_alone_writes(data):
    one, two = data / "one", data / "two"
    args = ["step", "--device", "cpu", "--pairs-a", data / "a", "--pairs-b", data / "b", "--config",
            data / "step.toml", "--quiet"]
    assert main(["train", *map(str, args), "--out", str(one)]) == 0
    code, out, err = run_to_end(torchrun(*args[:-1], "--progress-json", "--out", two))
    assert code == 0, err
    for single, double in zip(losses(one), losses(two), strict=True):
        assert single.keys() == double.keys()
        for key, value in single.items():
            if key != "seconds" and isinstance(value, float):
                assert double[key] == pytest.approx(value, rel=LOSS_RTOL), key
    lines = [json.loads(line) for line in out.splitlines()]  # rank 0's alone: each iteration once
    assert [line["iteration"] for line in lines[:-1] if "iteration" in line] == [1, 2, 3, 4]
    assert lines[-1] == {"model": str(two / "model.safetensors")}
    assert sorted(p.name for p in two.rglob("*") if "tensorboard" not in p.parts) == \
        sorted(p.name for p in one.rglob("*") if "tensorboard" not in p.parts)
    assert read_model_info(two).provenance["training"]["processes"] == 2


def test_ctrl_c_stops_every_rank_with_the_model_so_far(data):
    run = data / "run"
    child = subprocess.Popen(nproc(*munit_args(data, run, "--iters", 100_000, "--quiet")), start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(lambda: (run / "log.jsonl").is_file(), child)
    os.killpg(child.pid, signal.SIGINT)  # as a terminal does: the launcher and torchrun
    _, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode == 130, err
    training = read_model_info(run).provenance["training"]
    assert training["stopped_at"] >= 1 and training["planned_iterations"] == 100_000
    assert f"stopped at iteration {training['stopped_at']} of 100000" in err


def test_a_run_with_a_killed_rank_resumes_bit_for_bit(data):
    """Rank 1 killed after the checkpoint of iteration 12 and a logged iteration beyond it; the
    resumed run (two processes again) logs exactly the losses the killed one logged after 12.
    Checkpoints 12 iterations apart leave the kill 11 iterations to land before the next one."""
    run = data / "run"
    (data / "munit.toml").write_text(MUNIT.replace("checkpoint_every = 2", "checkpoint_every = 12"))
    child = subprocess.Popen(torchrun(*munit_args(data, run, "--iters", 100_000, "--quiet")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(lambda: (run / "log.jsonl").is_file() and losses(run)[-1]["iteration"] >= 13, child)
    rank_1 = next(p for p in psutil.Process(child.pid).children() if p.environ().get("RANK") == "1")
    rank_1.kill()
    child.communicate(timeout=TIMEOUT)
    assert child.returncode != 0  # torchrun tore the group down
    reached = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    before = {r["iteration"]: r for r in losses(run) if r["iteration"] > reached}
    assert before, "the killed run logged nothing after its checkpoint"
    code, _, err = run_to_end(nproc("munit", "--out", run, "--resume", "--iters", max(before), "--quiet"))
    assert code == 0, err
    after = {r["iteration"]: r for r in losses(run)[-len(before):]}
    assert after.keys() == before.keys()
    for iteration, record in after.items():
        assert {k: v for k, v in record.items() if k != "seconds"} == \
            {k: v for k, v in before[iteration].items() if k != "seconds"}


def test_a_batch_that_does_not_divide_is_one_line(data, capsys, monkeypatch):
    assert main(["train", *map(str, munit_args(data, data / "r1", "--batch", "3", "--nproc", "2"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch of 3 does not divide among 2 processes" in err and "--batch 2 or 4" in err
    monkeypatch.setenv("WORLD_SIZE", "2")  # a rank under torchrun: refused before the process group
    monkeypatch.setenv("RANK", "0")
    assert main(["train", *map(str, munit_args(data, data / "r2", "--batch", "3", "--quiet"))]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert not (data / "r1").exists() and not (data / "r2").exists()
    assert main(["train", *map(str, munit_args(data, data / "r3", "--nproc", "2"))]) == 2
    assert "--nproc starts torchrun itself; under torchrun leave it out" in capsys.readouterr().err
    assert World(size=2).device_for(torch.device("cpu")) == torch.device("cpu")


def _wait_for(condition, child, seconds=TIMEOUT):
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
