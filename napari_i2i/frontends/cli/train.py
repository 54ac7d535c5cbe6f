"""``napari-i2i train``: train an engine on image folders.

The data flags come from the registered data kinds (each kind's roles; a
plugin's kind adds its own). With ``--progress-json`` every message a front
end needs is one JSON object per line on standard output (the Train widget
reads nothing else):

- ``{"iteration": i, "iterations": n, "losses": {name: value}}`` after every iteration;
- ``{"warning": message}`` for each Python warning raised during the run;
- ``{"error": message}`` when the run fails, just before the process ends: exit status 2
  for a user error (the message says it all), another for a crash;
- ``{"model": path}`` at the end of a finished run.

Human-readable messages (and tracebacks) still go to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from napari_i2i.contract.registry import default_registry
from napari_i2i.contract.trainer_api import DataKind
from napari_i2i.core.device import DEVICE_CHOICES, resolve_device
from napari_i2i.frontends.cli.arguments import positive

PROGRESS_JSON_HELP = (
    "instead of the progress bar, one JSON object per line on standard output, for front ends: "
    '{"iteration": i, "iterations": n, "losses": {...}} per iteration, {"warning": MESSAGE} per '
    'Python warning, {"error": MESSAGE} when the run fails (exit status 2: a user error) and '
    '{"model": PATH} at the end; once nothing reads them any more (the front end closed), the run '
    "stops as on Ctrl-C"
)


def add_parser(commands) -> None:
    """``napari-i2i train``, with the data flags of every registered data kind."""
    kinds = default_registry().data_kinds()
    train = commands.add_parser(
        "train",
        help="train an engine on image folders",
        description="Train ENGINE on the data its trainer takes: "
        + "; ".join(f"{kind.description}: {', '.join(_engines_of(kind)) or 'no engine installed'}"
                    for kind in kinds)
        + ". Writes checkpoints, log.jsonl, validation images and RUN_DIR/model.safetensors. "
        "Ctrl-C saves a checkpoint; --resume continues it.",
    )
    train.add_argument("engine", help="a trainable engine (see `napari-i2i engines`)")
    added: set[str] = set()
    for kind in kinds:
        roles = [role for role in kind.roles if role.flag not in added]
        if not roles:
            continue
        group = train.add_argument_group(f"{kind.name} data", kind.description)
        for role in roles:
            group.add_argument(role.flag, type=Path if role.folder else str, metavar=role.metavar, help=role.help)
            added.add(role.flag)
    train.add_argument("--out", type=Path, required=True, metavar="RUN_DIR")
    train.add_argument("--preset", default="small", help="small (CPU, minutes) or paper (published sizes)")
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML/YAML with [model] and [training] tables and loop settings")
    train.add_argument("--iters", type=positive, metavar="N")
    train.add_argument("--size", type=positive, metavar="PX", help="training crop size")
    train.add_argument("--batch", type=positive, metavar="B")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N")
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--progress-json", action="store_true", help=PROGRESS_JSON_HELP)
    train.add_argument("--stop-file", type=Path, metavar="FILE",
                       help="stop as Ctrl-C does (checkpoint saved, exit status 130) once FILE exists: "
                       "a way for front ends to stop a run on any platform")


def _engines_of(kind: DataKind) -> list[str]:
    registry = default_registry()
    return [engine for engine in registry.trainable() if registry.trainer(engine).data == kind.name]


def _flag_value(args: argparse.Namespace, flag: str):
    return getattr(args, flag.lstrip("-").replace("-", "_"))


def run(args: argparse.Namespace) -> int:
    """Train; with ``--progress-json`` warnings and errors are JSON lines too (see the module)."""
    if not args.progress_json:
        return _train(args)
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            _print_json({"warning": str(message)})
            shown(message, category, filename, lineno, file, line)  # and on standard error, for the log

        warnings.showwarning = show
        try:
            return _train(args)
        except Exception as error:
            _print_json({"error": str(error)})
            raise


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainers.run import RUN_FILE, train

    device = resolve_device(args.device)
    settings = None
    if args.resume:
        given = [role.flag for kind in default_registry().data_kinds() for role in kind.roles
                 if _flag_value(args, role.flag) is not None]
        if given:
            raise ValueError(f"{' and '.join(dict.fromkeys(given))} cannot change a run being resumed: "
                             "its data and settings come from RUN_DIR/run.json")
    else:
        settings = _new_settings(args)
    if settings is not None:
        total = settings.iterations
    else:  # resumed: --iters, or the run's own
        run_file = args.out / RUN_FILE
        total = args.iters or (json.loads(run_file.read_text())["iterations"] if run_file.is_file() else None)

    reader_gone = False  # --progress-json: whoever read standard output has closed it

    def report(iteration: int, losses: dict[str, float]) -> None:
        nonlocal reader_gone
        if not reader_gone:
            reader_gone = not _print_json({"iteration": iteration, "iterations": total, "losses": losses})

    def should_stop() -> bool:  # the front end's Cancel, or the front end gone (e.g. napari closed)
        return reader_gone or (args.stop_file is not None and args.stop_file.exists())

    with tqdm(disable=args.quiet or args.progress_json, desc=f"training {args.engine}", unit="it",
              file=sys.stderr) as bar:
        def progress(iteration: int, losses: dict[str, float]) -> None:
            if bar.total is None:
                bar.total = total
            bar.n = iteration
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            bar.refresh()

        path = train(args.out, settings, device=device, resume=args.resume,
                     on_progress=report if args.progress_json else progress,
                     iterations=args.iters if args.resume else None, should_stop=should_stop)
    if path is None:
        print(f"stopped; checkpoint saved in {args.out}. Continue with --resume.", file=sys.stderr)
        return 130
    if args.progress_json:
        _print_json({"model": str(path)})
    else:
        print(path)
    return 0


def _new_settings(args: argparse.Namespace):
    """The settings of a new run from the flags of the engine's data kind; others' flags are an error."""
    from trainers.run import make_settings, read_config_file

    registry = default_registry()
    kind = registry.trainer_data_kind(args.engine)
    own = {role.flag for role in kind.roles}
    others = [role.flag for other in registry.data_kinds() for role in other.roles
              if role.flag not in own and _flag_value(args, role.flag) is not None]
    if others:
        raise ValueError(f"{args.engine} trains on {kind.description}; drop {' and '.join(dict.fromkeys(others))}")
    missing = [role.flag for role in kind.roles if role.required and _flag_value(args, role.flag) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(f"{' and '.join(missing)} {verb} required for {args.engine} (unless --resume)")
    inputs = {role.key: _flag_value(args, role.flag) for role in kind.roles}
    overrides = {"size": args.size, "batch": args.batch, "iterations": args.iters, "seed": args.seed}
    config = read_config_file(args.config) if args.config else None
    # Dataset problems are DatasetErrors, a kind of ValueError: reported in one message.
    return make_settings(args.engine, args.preset, inputs, config=config, overrides=overrides, registry=registry)


def _print_json(record: dict) -> bool:
    """One JSON line on standard output; False when nothing reads it any more (a closed pipe)."""
    try:
        print(json.dumps(record), flush=True)
        return True
    except BrokenPipeError:
        # Standard output goes nowhere from now on, so that later writes (and the flush at exit)
        # cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
