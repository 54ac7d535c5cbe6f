"""Seconds until a command-line help is printed, in fresh processes.

``napari-i2i train --help`` builds its flags from the data kinds alone (the
entry-point group ``napari_i2i.data_kinds``), so it imports no torch and no
engine; ``import torch`` is measured alongside as what that saves. Each
command runs ``--repeats`` times after one untimed run (to warm the file
cache); the median and the fastest wall seconds are printed, and whether the
process imported torch.

    python benchmarks/cli_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

# Runs napari-i2i in the child as its console script would, then says whether torch was imported.
PROBE = """\
import runpy, sys
sys.argv = ["napari-i2i", *{args!r}]
try:
    runpy.run_module("napari_i2i", run_name="__main__")
except SystemExit:
    pass
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""
COMMANDS = {
    "napari-i2i --help": ["--help"],
    "napari-i2i --version": ["--version"],
    "napari-i2i engines --help": ["engines", "--help"],
    "napari-i2i translate --help": ["translate", "--help"],
    "napari-i2i train --help": ["train", "--help"],
}


def seconds(code: str) -> tuple[float, str]:
    """Wall seconds of ``python -c code`` and its standard error."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (default 5)")
    args = parser.parse_args()
    cases = {name: PROBE.format(args=command) for name, command in COMMANDS.items()}
    cases["python -c 'import torch' (for comparison)"] = "import torch"
    print(f"{'command':46} {'median s':>9} {'fastest s':>10}  torch")
    for name, code in cases.items():
        _, stderr = seconds(code)  # untimed: warms the file cache
        runs = [seconds(code)[0] for _ in range(args.repeats)]
        imported = "yes" if "import torch" in code or "torch imported: True" in stderr else "no"
        print(f"{name:46} {statistics.median(runs):9.2f} {min(runs):10.2f}  {imported}")


if __name__ == "__main__":
    main()
