"""The first hour with napari-i2i: a fast `--help`, user errors caught without importing torch,
hostile model files never unpickled, and the README's commands as the contract CI runs."""

import argparse
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_i2i.contract.engine_api import EngineError, ReferenceImageError
from napari_i2i.core.layer_data import LayerDataError
from napari_i2i.core.model_file import ModelFileError, load_model, read_model_info
from napari_i2i.frontends.cli import SUBCOMMANDS, USER_ERRORS, build_parser, main, requested_command

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI in a fresh interpreter, then says which heavy modules that imported.
PROBE = """
import sys
from napari_i2i.frontends.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in ("torch", "napari", "qtpy") if name in sys.modules)
print("heavy modules:", ", ".join(heavy) or "none", file=sys.stderr)
"""


# --- starting fast ------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["engines", "--help"], ["convert", "--help"],
                                  ["demo", "--help"], ["translate", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stderr.strip().splitlines()[-1] == "heavy modules: none", done.stderr
    assert "napari-i2i" in done.stdout


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def test_top_level_help_lists_every_subcommand_as_its_full_parser_describes_it():
    listed = {choice.dest: choice.help for choice in _subcommands(build_parser())._choices_actions}
    assert list(listed) == ["engines", "translate", "train", "convert", "demo"]
    for name in SUBCOMMANDS:
        full = _subcommands(build_parser(name))
        assert {c.dest: c.help for c in full._choices_actions}[name] == listed[name]  # no drift
        assert len(full.choices[name]._actions) > 1  # the real parser: more than --help
        others = [parser for other, parser in full.choices.items() if other != name]
        assert all(len(parser._actions) == 1 for parser in others)  # placeholders: --help only


def test_the_command_is_the_first_word_that_is_not_an_option():
    assert requested_command(["--help"]) is None
    assert requested_command(["--version", "train"]) == "train"
    assert requested_command(["translate", "m.safetensors", "-o", "out"]) == "translate"


def test_a_misspelt_command_is_refused_with_the_list(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["trian", "munit"])
    assert exit.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_user_errors_are_the_classes_the_modules_raise_and_their_subclasses():
    from napari_i2i.contract.registry import UnknownEngineError
    from napari_i2i.core.device import DeviceError
    from napari_i2i.core.image_io import ImageFileError, TooManyPixelsError
    from trainers.datasets import DatasetError

    for error in (ReferenceImageError("x", 1), EngineError("x"), LayerDataError("x"), FileNotFoundError("x"),
                  UnknownEngineError("x"), DeviceError("x"), ImageFileError("x"), TooManyPixelsError("x"),
                  ModelFileError("x"), DatasetError("x")):
        assert isinstance(error, USER_ERRORS), error
    assert not isinstance(RuntimeError("a bug"), USER_ERRORS) and not isinstance(KeyError("a bug"), USER_ERRORS)


def test_a_user_error_from_a_lazily_imported_command_is_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.safetensors"), str(tmp_path / "out.safetensors")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("napari-i2i: error:") and "no such model file" in line


def test_a_bug_keeps_its_traceback(monkeypatch):
    from napari_i2i.frontends.cli import models

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(models, "list_engines", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["engines"])


# --- hostile and foreign model files --------------------------------------------------------


class Payload:
    """A pickle that creates a folder when unpickled: proof of code execution."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __reduce__(self):
        return os.mkdir, (self.folder,)


def test_the_payload_runs_when_unpickled(tmp_path):
    """The hostile files below would act if anything unpickled them."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").is_dir()


@pytest.mark.parametrize("name, write", [
    ("evil.pt", lambda path, payload: torch.save({"weights": payload}, path)),
    ("evil.pth", lambda path, payload: path.write_bytes(pickle.dumps(payload))),
    ("renamed.safetensors", lambda path, payload: torch.save({"weights": payload}, path)),  # a zip
    ("plain.safetensors", lambda path, payload: path.write_bytes(pickle.dumps(payload))),
])
def test_hostile_pickles_are_refused_without_running(tmp_path, capsys, name, write):
    model, ran = tmp_path / name, tmp_path / "ran"
    write(model, Payload(ran))
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    before = model.read_bytes()

    assert main(["translate", str(model), str(image), "-o", str(tmp_path / "out.png"), "--quiet"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("napari-i2i: error:") and "pickle" in line
    for read in (read_model_info, load_model):
        with pytest.raises(ModelFileError, match="pickle"):
            read(model)
    assert not ran.exists() and not (tmp_path / "out.png").exists()
    assert model.read_bytes() == before


# --- the README's commands ------------------------------------------------------------------


def _bash_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", markdown, re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The two commands"):readme.index("## Engines")]
    install, test = _bash_blocks(section)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == test  # the last thing CI does
    assert "stardist" in test  # the benchmark-task tests' sample images: none skip for a user
    assert "download.pytorch.org/whl/cpu" in section and "CUDA" in section
    assert install.startswith("python3 -m venv .venv") and install.endswith(".venv/bin/napari-i2i demo")
