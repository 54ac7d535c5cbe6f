"""`napari-i2i translate` on many files: folders and globs, dask.distributed, the report."""

import argparse
import os
import sys

import numpy as np
import pytest
from PIL import Image

from napari_i2i.frontends.cli import main
from napari_i2i.frontends.cli.batch import IN_PROCESS_MAX_FILES, expand_inputs, on_cluster

PINNED = ["--precision", "fp32", "--compile", "off", "--tile", "64"]


@pytest.fixture(autouse=True, scope="module")
def _environment_restored():
    """distributed sets OMP_NUM_THREADS and kin in this process's environment for the workers it
    spawns; later tests' child processes must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def scheduler():
    """The address of a one-worker cluster in this process (threads: starts in about a second)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def folder(tmp_path, rng):
    """Three small RGB PNGs, a truncated one (its header reads, its pixels do not) and one that is
    no image at all, plus a text file and a hidden image that a folder input leaves out."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(images / f"{name}.png")
    whole = (images / "a.png").read_bytes()
    (images / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (images / "junk.png").write_bytes(b"no image here")
    (images / "notes.txt").write_text("not an input")
    (images / ".hidden.png").write_bytes(whole)
    return images


def _outputs(folder):
    return sorted(path.name for path in folder.iterdir())


def test_a_folder_with_bad_files_translates_the_others(munit_file, folder, tmp_path, scheduler, capsys):
    out = tmp_path / "out"
    code = main(["translate", str(munit_file), str(folder), "-o", str(out), "--scheduler", scheduler, *PINNED])
    assert code == 1
    assert _outputs(out) == ["a_a2b.png", "b_a2b.png", "c_a2b.png"]
    captured = capsys.readouterr()
    report = captured.err[captured.err.index("5 input(s)"):]
    assert "3 ok, 2 failed, 0 skipped" in report
    assert f"failed   {folder / 'truncated.png'}: cannot read image" in report
    assert f"failed   {folder / 'junk.png'}: cannot read image" in report
    assert f"ok       {folder / 'b.png'} -> {out / 'b_a2b.png'}" in report
    assert captured.err.count("] ok ") == 3  # a progress line per finished file
    assert captured.out.split() == [str(out / f"{name}_a2b.png") for name in "abc"]
    for name in "abc":  # the same as a single-file run in this process
        single = tmp_path / f"single_{name}.png"
        assert main(["translate", str(munit_file), str(folder / f"{name}.png"), "-o", str(single), "--quiet",
                     *PINNED]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_a2b.png")),
                                      np.asarray(Image.open(single)))


def test_skip_existing_translates_only_what_is_missing(munit_file, folder, tmp_path, scheduler, capsys):
    for bad in ("truncated.png", "junk.png"):
        (folder / bad).unlink()
    out = tmp_path / "out"
    run = ["translate", str(munit_file), str(folder), "-o", str(out), "--scheduler", scheduler, "--quiet", *PINNED]
    assert main(run) == 0
    (out / "b_a2b.png").unlink()
    kept = {name: (out / name).stat().st_mtime_ns for name in ("a_a2b.png", "c_a2b.png")}
    capsys.readouterr()

    assert main(run) == 2  # an existing output is refused before any work
    assert "a_a2b.png: exists; --overwrite replaces it, --skip-existing skips its input" in capsys.readouterr().err
    assert main([*run, "--skip-existing", "--overwrite"]) == 2
    assert capsys.readouterr().err.strip().endswith("--overwrite replaces them: give one")

    assert main([*run, "--skip-existing"]) == 0
    report = capsys.readouterr().err
    assert "1 ok, 0 failed, 2 skipped" in report
    assert f"skipped  {folder / 'a.png'}: its outputs exist" in report
    assert _outputs(out) == ["a_a2b.png", "b_a2b.png", "c_a2b.png"]
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept


def test_local_worker_processes_with_a_glob(munit_file, folder, tmp_path, scheduler, capsys):
    """The default cluster: worker processes started and closed by the command (one here)."""
    pattern = str(folder / "[ab].png")
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["translate", str(munit_file), pattern, "-o", str(local), "--workers", "1", "--threads", "1",
                 "--quiet", *PINNED]) == 0
    assert main(["translate", str(munit_file), pattern, "-o", str(remote), "--scheduler", scheduler, "--quiet",
                 *PINNED]) == 0
    assert _outputs(local) == _outputs(remote) == ["a_a2b.png", "b_a2b.png"]
    for name in _outputs(local):
        np.testing.assert_array_equal(np.asarray(Image.open(local / name)), np.asarray(Image.open(remote / name)))


def test_folders_and_globs_name_their_image_files(folder, tmp_path):
    images = ["a.png", "b.png", "c.png", "junk.png", "truncated.png"]
    assert expand_inputs([folder]) == [folder / name for name in images]
    assert expand_inputs([folder / "[bc].png", folder / "a.png"]) == [folder / "b.png", folder / "c.png",
                                                                       folder / "a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="a folder without image files"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="no image file matches this pattern"):
        expand_inputs([folder / "*.tif"])


def _flags(inputs: int, **given) -> argparse.Namespace:
    flags = {"workers": None, "scheduler": None, "threads": None, "skip_existing": False, "overwrite": False}
    return argparse.Namespace(inputs=[f"{i}.png" for i in range(inputs)], **(flags | given))


def test_the_rule_for_a_cluster():
    assert not on_cluster(_flags(IN_PROCESS_MAX_FILES))
    assert on_cluster(_flags(IN_PROCESS_MAX_FILES + 1))
    assert on_cluster(_flags(1, workers=2)) and on_cluster(_flags(1, scheduler="tcp://x:8786"))
    assert on_cluster(_flags(1, skip_existing=True))
    with pytest.raises(ValueError, match="--threads sets the torch threads of dask workers"):
        on_cluster(_flags(2, threads=2))


def test_a_few_files_run_in_this_process_without_dask(munit_file, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # importing it now fails
    out = tmp_path / "out"
    assert main(["translate", str(munit_file), str(folder / "a.png"), str(folder / "b.png"), "-o", str(out),
                 "--quiet", *PINNED]) == 0
    assert _outputs(out) == ["a_a2b.png", "b_a2b.png"]
    assert main(["translate", str(munit_file), str(folder / "c.png"), "-o", str(tmp_path / "c.tif"),
                 "--quiet", *PINNED]) == 0


def test_an_unreachable_scheduler_is_one_line(munit_file, folder, tmp_path, monkeypatch, capsys):
    from napari_i2i.frontends.cli import batch_run

    monkeypatch.setattr(batch_run, "CONNECT_SECONDS", 1)
    code = main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet", *PINNED])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("napari-i2i: error: --scheduler tcp://127.0.0.1:9: cannot connect")


def test_local_workers_share_out_the_machine():
    from napari_i2i.frontends.cli.batch_run import local_layout

    assert local_layout(None, 0, None, files=64, cores=16) == (8, 2)  # one per 2 cores
    assert local_layout(None, 0, None, files=3, cores=16) == (3, 5)  # never more than the files
    assert local_layout(None, 4, None, files=64, cores=16) == (4, 4)  # one per GPU
    assert local_layout(2, 4, 1, files=64, cores=16) == (2, 1)  # as asked
    assert local_layout(None, 0, None, files=64, cores=1) == (1, 1)


def test_workers_on_a_gpu_machine_take_a_gpu_each(monkeypatch):
    import types

    import distributed
    import torch

    from napari_i2i.frontends.cli.batch_worker import GPU_BY_WORKER, worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "get_worker", lambda: types.SimpleNamespace(name=3))
    assert worker_device(GPU_BY_WORKER) == "cuda:1"
    assert worker_device("cpu") == "cpu"



@pytest.mark.parametrize("extra, message", [
    (["--workers", "1", "--diversity-map", "{out}/map.tif", "--samples", "2"], "--diversity-map maps the samples"),
    (["--threads", "2"], "--threads sets the torch threads of dask workers"),
])
def test_flags_the_many_files_path_refuses(munit_file, folder, tmp_path, capsys, extra, message):
    code = main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(tmp_path / "out"),
                 *[word.format(out=tmp_path) for word in extra]])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_workers_and_scheduler_exclude_each_other(munit_file, folder, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(tmp_path / "out"),
              "--workers", "1", "--scheduler", "tcp://x:8786"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_style_edits_reach_the_workers_and_are_checked_before_work(munit_file, folder, tmp_path, scheduler,
                                                                  capsys):
    from napari_i2i.core.image_io import read_image

    out, single = tmp_path / "out", tmp_path / "single.png"
    edit = ["--style-edit", "0=2.5", "--seed", "4"]
    assert main(["translate", str(munit_file), str(folder / "a.png"), str(folder / "b.png"), "-o", str(out),
                 "--scheduler", scheduler, "--quiet", *edit, *PINNED]) == 0
    assert main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(single), "--quiet", *edit,
                 *PINNED]) == 0
    np.testing.assert_array_equal(read_image(out / "a_a2b.png").data, read_image(single).data)
    plain = tmp_path / "plain.png"
    assert main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(plain), "--quiet", "--seed", "4",
                 *PINNED]) == 0
    assert not np.array_equal(read_image(plain).data, read_image(single).data)  # the edit did something
    capsys.readouterr()
    assert main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(tmp_path / "refused"),
                 "--scheduler", scheduler, "--style-edit", "99=1", *PINNED]) == 2
    assert "style axis 99 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_store_outputs_are_written_by_the_workers(munit_file, folder, tmp_path, scheduler):
    """A zarr output goes through the same store path as a single-file run."""
    from napari_i2i.core.image_io import read_image

    out = tmp_path / "out"
    assert main(["translate", str(munit_file), str(folder / "a.png"), str(folder / "b.png"), "-o", str(out),
                 "--format", "zarr", "--scheduler", scheduler, "--quiet", *PINNED]) == 0
    assert _outputs(out) == ["a_a2b.zarr", "b_a2b.zarr"]
    single = tmp_path / "single.zarr"
    assert main(["translate", str(munit_file), str(folder / "a.png"), "-o", str(single), "--quiet", *PINNED]) == 0
    np.testing.assert_array_equal(np.asarray(read_image(out / "a_a2b.zarr").data),
                                  np.asarray(read_image(single).data))
