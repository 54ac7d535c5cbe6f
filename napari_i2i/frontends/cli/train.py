"""``napari-i2i train``: train an engine on image folders.

The data flags come from the registered data kinds (each kind's roles; a
plugin's kind adds its own), loaded on their own: building this parser
(``napari-i2i train --help``) imports no engine and no torch. With
``--progress-json`` every message a front end needs is one JSON object per
line on standard output (the Train widget reads nothing else):

- ``{"iteration": i, "iterations": n, "losses": {name: value}}`` after every iteration;
- ``{"warning": message}`` for each Python warning raised during the run;
- ``{"run_score": {"iteration": i, "run_score": s, TERM: value, "content_lost": reason}}`` at each
  validation and at the end (``trainers.run_score``), with ``"content_lost": message`` beside it
  when the content check failed (that message also comes as a warning);
- ``{"error": message}`` when the run fails, just before the process ends: exit status 2
  for a user error (the message says it all), another for a crash;
- ``{"model": path}`` at the end of a finished run; ``{"model": path, "stopped_at": i,
  "iterations": n}`` before exit status 130 when a stopped run wrote the model so far.

Human-readable messages (and tracebacks) still go to standard error.

Several processes: ``torchrun --standalone --nproc-per-node N -m napari_i2i train …`` runs one
training process per rank (``trainers.distributed``), and ``--nproc N`` launches exactly that
(the same arguments, less ``--nproc``). Rank 0 alone speaks: progress, JSON lines, the
messages; the others are quiet and leave a user error to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from napari_i2i.contract.registry import data_kind_registry, default_registry
from napari_i2i.core.constants import COMPILE_CHOICES, PRECISION_CHOICES
from napari_i2i.frontends.cli.arguments import positive
from napari_i2i.frontends.cli.progress import TrainingProgress

DEFAULT_PRESET = "small"
DEVICE_HELP = "auto (default: CUDA, then MPS, then the CPU), cpu, cuda, mps or cuda:N"
PROGRESS_JSON_HELP = (
    "instead of the progress bar, one JSON object per line on standard output, for front ends: "
    '{"iteration": i, "iterations": n, "losses": {...}} per iteration, {"warning": MESSAGE} per '
    'Python warning, {"run_score": {...}} per validation, {"error": MESSAGE} when the run fails (exit status 2: a user error) and '
    '{"model": PATH} at the end (with "stopped_at" when stopped); once nothing reads them any more '
    "(the front end closed), the run stops as on Ctrl-C"
)
NPROC_HELP = (
    "train in N processes (default 1): runs `python -m torch.distributed.run --standalone --nproc-per-node N "
    "-m napari_i2i train …` with the other arguments; --batch is then the global batch, a multiple of N; "
    "the CPU (gloo) or one CUDA GPU per process (nccl)"
)
PRECISION_HELP = (
    "arithmetic of the training steps: auto (default) = bf16 where the hardware runs it fast (CPUs with "
    "AVX512-BF16 or AMX, GPUs with bf16), else fp32; fp16 on GPUs only (with loss scaling); a resumed run "
    "keeps the precision it started with"
)
COMPILE_HELP = (
    "torch.compile the networks: on, off, or auto (default: on CUDA for runs of 2000 iterations or more, "
    "never on the CPU, where the first compile takes minutes: use on for long CPU runs); may change on --resume"
)
STATUS_FILE_VARIABLE = "NAPARI_I2I_STATUS_FILE"  # rank 0 writes its exit status there, for --nproc
SHUTDOWN_SECONDS = 600  # --nproc: how long torchrun lets the ranks finish a stop before it kills them
# Flags of settings a resumed run keeps from RUN_DIR/run.json (dest: flag).
FIXED_ON_RESUME = {"preset": "--preset", "config": "--config", "size": "--size", "batch": "--batch",
                   "seed": "--seed", "resize": "--resize", "flip": "--flip/--no-flip", "precision": "--precision"}


def add_parser(commands) -> None:
    """``napari-i2i train``, with the data flags of every registered data kind."""
    train = commands.add_parser(
        "train",
        help="train an engine on image folders",
        description="Train ENGINE (see `napari-i2i engines`) on the data its trainer takes, one group of "
        "flags per kind of data below. Writes run.json, checkpoints, log.jsonl, validation images and "
        "RUN_DIR/model.safetensors. Ctrl-C (or --stop-file) saves a checkpoint and the model so far; "
        "--resume continues the run.",
    )
    train.add_argument("engine", help="a trainable engine (see `napari-i2i engines`)")
    _add_data_flags(train)
    run = train.add_argument_group("the run")
    run.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                     help="the run folder: new or empty, or (with --resume) a run to continue")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in RUN_DIR from its last checkpoint, with its settings")
    run.add_argument("--iters", type=positive, metavar="N",
                     help="iterations to train in all (default: the preset's); with --resume the new target")
    run.add_argument("--device", default="auto", help=DEVICE_HELP)
    run.add_argument("--nproc", type=positive, metavar="N", help=NPROC_HELP)
    run.add_argument("--compile", choices=COMPILE_CHOICES, help=COMPILE_HELP)
    settings = train.add_argument_group("settings (a new run; preset, then --config, then these flags)")
    settings.add_argument("--preset", help="small (CPU, minutes; default), paper (published sizes), or "
                          "one of an engine's own (munit, funit: small-colour, for changes of colour only)")
    settings.add_argument("--config", type=Path, metavar="FILE",
                          help="TOML/YAML with [model] and [training] tables and loop settings (see docs/training.md)")
    settings.add_argument("--size", type=positive, metavar="PX", help="training crop size in pixels (default: the preset's)")
    settings.add_argument("--resize", type=positive, metavar="PX",
                          help="resize each image's short side to PX before cropping (default: never, "
                          "except the classes kind's presets); lets images smaller than the crop train")
    settings.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                          help="random horizontal flips (default: on); --no-flip where a mirror image is "
                          "another thing (text, glyphs, chiral structures)")
    settings.add_argument("--batch", type=positive, metavar="B", help="images per iteration (default: the preset's)")
    settings.add_argument("--precision", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    settings.add_argument("--seed", type=int, metavar="S",
                          help="seed of the initial weights, crops and styles (default 0): equal seeds, equal runs")
    saving = train.add_argument_group("checkpoints (may change on --resume)")
    saving.add_argument("--checkpoint-every", type=positive, metavar="N",
                        help="a checkpoint every N iterations (default: the preset's, e.g. 500 for small)")
    saving.add_argument("--checkpoint-minutes", type=_minutes, metavar="M",
                        help="also a checkpoint once M minutes have passed since the last (default 5; 0: off)")
    output = train.add_argument_group("output")
    output.add_argument("--quiet", action="store_true", help="no progress display")
    output.add_argument("--progress-json", action="store_true", help=PROGRESS_JSON_HELP)
    output.add_argument("--stop-file", type=Path, metavar="FILE",
                        help="stop as Ctrl-C does (checkpoint and model so far saved, exit status 130) once "
                        "FILE exists: a way for front ends to stop a run on any platform")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    added: set[str] = set()
    for kind in data_kind_registry().data_kinds():
        roles = [role for role in kind.roles if role.flag not in added]
        if not roles:
            continue
        group = parser.add_argument_group(f"{kind.name} data", kind.description)
        for role in roles:
            group.add_argument(role.flag, type=Path if role.folder else str, metavar=role.metavar, help=role.help)
            added.add(role.flag)


def _minutes(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more minutes, got {text}")
    return value


def _flag_value(args: argparse.Namespace, flag: str):
    return getattr(args, flag.lstrip("-").replace("-", "_"))


def run(args: argparse.Namespace) -> int:
    """Train; with ``--progress-json`` warnings and errors are JSON lines too (see the module);
    with ``--nproc`` in several processes; under torchrun as one rank of them."""
    if args.nproc is not None:
        return _launch(args)
    if int(os.environ.get("RANK", "0")) > 0:
        return _quiet_rank(args)
    if STATUS_FILE_VARIABLE not in os.environ:
        return _speaking_rank(args)
    status = 1  # a crash, unless the run says otherwise
    try:
        status = _speaking_rank(args)
        return status
    except KeyboardInterrupt:
        status = 130
        raise
    except Exception as error:
        from napari_i2i.frontends.cli import USER_ERRORS

        status = 2 if isinstance(error, USER_ERRORS) else 1
        raise
    finally:
        Path(os.environ[STATUS_FILE_VARIABLE]).write_text(str(status))


def _quiet_rank(args: argparse.Namespace) -> int:
    """A rank other than 0: no output, no warnings (rank 0 shows them); a user error is rank 0's to say."""
    from napari_i2i.frontends.cli import USER_ERRORS

    args.quiet, args.progress_json = True, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _train(args, speaking=False)
        except USER_ERRORS:
            return 2


def _speaking_rank(args: argparse.Namespace) -> int:
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


def _train(args: argparse.Namespace, speaking: bool = True) -> int:
    from napari_i2i.core.device import resolve_device
    from trainers.loop import ContentLostWarning
    from trainers.run import train

    device = resolve_device(args.device)
    if args.resume:
        settings, total = None, _resumed_total(args)
    else:
        settings = _new_settings(args)
        total = settings.iterations
    reader_gone = False  # --progress-json: whoever read standard output has closed it

    def report(iteration: int, losses: dict[str, float]) -> None:
        nonlocal reader_gone
        if not reader_gone:
            reader_gone = not _print_json({"iteration": iteration, "iterations": total, "losses": losses})

    def scored(iteration: int, result) -> None:  # a trainers.run_score.RunScore
        nonlocal reader_gone
        warning = result.warning(iteration)
        if args.progress_json:  # the content check's warning also comes as {"warning": …}
            if not reader_gone:
                record = {"run_score": {"iteration": iteration, **result.record()}}
                reader_gone = not _print_json({**record, "content_lost": warning} if warning else record)
        elif not args.quiet:
            progress.score(iteration, result.record(), warning)

    def should_stop() -> bool:  # the front end's Cancel, or the front end gone (e.g. napari closed)
        return reader_gone or (args.stop_file is not None and args.stop_file.exists())

    started = time.time()
    with TrainingProgress(f"training {args.engine}", total, off=args.quiet or args.progress_json) as progress, \
            warnings.catch_warnings():
        if not args.progress_json:  # scored() says it in a line of its own
            warnings.filterwarnings("ignore", category=ContentLostWarning)
        path = train(args.out, settings, device=device, resume=args.resume, on_score=scored,
                     on_progress=report if args.progress_json else progress,
                     iterations=args.iters if args.resume else None, should_stop=should_stop,
                     checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
                     compile_choice=args.compile if args.resume else None)
    if path is None:
        return _stopped(args, started, reader_gone) if speaking else 130
    if not speaking:
        return 0
    if args.progress_json:
        _print_json({"model": str(path)})
    else:
        print(path)
    return 0


def _stopped(args: argparse.Namespace, started: float, reader_gone: bool) -> int:
    """Say where a stopped run stands: its checkpoint, and the model so far when one was written."""
    from napari_i2i.core.model_file import read_model_info
    from trainers.run import MODEL_FILE

    model = args.out / MODEL_FILE
    if not model.is_file() or model.stat().st_mtime < started - 1:
        print(f"stopped before the first iteration; nothing trained in {args.out}.", file=sys.stderr)
        return 130
    training = read_model_info(model).provenance["training"]
    stopped_at, planned = training["stopped_at"], training["planned_iterations"]
    if args.progress_json and not reader_gone:
        _print_json({"model": str(model), "stopped_at": stopped_at, "iterations": planned})
    print(f"stopped at iteration {stopped_at} of {planned}: checkpoint saved in {args.out}, the model so far "
          f"in {model}. Continue with --resume.", file=sys.stderr)
    return 130


def _resumed_total(args: argparse.Namespace) -> int | None:
    """The iterations a resumed run trains to (--iters, or its own); flags it cannot change are errors."""
    from trainers.run import RUN_FILE

    registry = data_kind_registry()
    given = [role.flag for kind in registry.data_kinds() for role in kind.roles if _flag_value(args, role.flag) is not None]
    given += [flag for dest, flag in FIXED_ON_RESUME.items() if getattr(args, dest) is not None]
    if given:
        raise ValueError(f"{' and '.join(dict.fromkeys(given))} cannot change a run being resumed: "
                         "its data and settings come from RUN_DIR/run.json")
    run_file = args.out / RUN_FILE
    return args.iters or (json.loads(run_file.read_text())["iterations"] if run_file.is_file() else None)


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
    overrides = {"size": args.size, "batch": args.batch, "iterations": args.iters, "seed": args.seed,
                 "resize": args.resize, "flip": args.flip, "checkpoint_every": args.checkpoint_every,
                 "checkpoint_minutes": args.checkpoint_minutes, "precision": args.precision, "compile": args.compile}
    config = read_config_file(args.config) if args.config else None
    # Dataset problems are DatasetErrors, a kind of ValueError: reported in one message.
    return make_settings(args.engine, args.preset or DEFAULT_PRESET, inputs, config=config, overrides=overrides,
                         registry=registry)


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


def _launch(args: argparse.Namespace) -> int:
    """``--nproc N``: this command again under ``torch.distributed.run``, without ``--nproc``;
    the exit status is rank 0's (torchrun's own is 1 whenever a rank ends otherwise than with 0)."""
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--nproc starts torchrun itself; under torchrun leave it out")
    nproc, args.nproc = args.nproc, None
    if nproc == 1:
        return run(args)
    _check_global_batch(args, nproc)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "--shutdown-timeout", str(SHUTDOWN_SECONDS), "-m", "napari_i2i", "train", *command_line(args)]
    with tempfile.TemporaryDirectory(prefix="napari-i2i-") as folder:
        status_file = Path(folder, "status")
        env = {**os.environ, STATUS_FILE_VARIABLE: str(status_file)}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        child = subprocess.Popen(command, env=env)
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # torchrun has it too: it passes it on, and every rank stops cleanly
                continue
        return int(status_file.read_text()) if status_file.is_file() else code


def command_line(args: argparse.Namespace) -> list[str]:
    """The ``train`` arguments that give *args* (those left at their defaults left out)."""
    commands = argparse.ArgumentParser().add_subparsers()
    add_parser(commands)
    words = [args.engine]
    for action in commands.choices["train"]._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true, set (False is its default)
            words.append(flag)
        else:
            words += [flag, str(value)]
    return words


def _check_global_batch(args: argparse.Namespace, nproc: int) -> None:
    """--nproc: a batch that does not divide among the processes is one line before anything starts
    (the ranks check it too; this spares torchrun's report of N failed processes). Torch is
    imported only when the preset decides the batch."""
    from trainers.run_settings import RUN_FILE, check_global_batch, read_config_file

    if args.resume:
        run_file = args.out / RUN_FILE
        batch = json.loads(run_file.read_text()).get("batch") if run_file.is_file() else None
    else:
        batch = args.batch or (read_config_file(args.config).get("batch") if args.config else None)
        if batch is None:
            from trainers.run_settings import preset_loop_settings

            batch = preset_loop_settings(args.engine, args.preset or DEFAULT_PRESET).get("batch")
    if isinstance(batch, int):
        check_global_batch(batch, nproc)
