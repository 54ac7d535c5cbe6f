"""``napari-i2i train``: train an engine on image folders."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from napari_i2i.core.device import DEVICE_CHOICES, resolve_device
from napari_i2i.frontends.cli.arguments import positive


def add_parser(commands) -> None:
    """``napari-i2i train``."""
    train = commands.add_parser(
        "train",
        help="train an engine on image folders",
        description="Train ENGINE on two folders of unpaired images (--domain-a, --domain-b: "
        "munit, unit), on one folder of class subfolders (--classes: funit) or on aligned "
        "pairs (--pairs-a [--pairs-b]: step). Writes "
        "checkpoints, log.jsonl, validation images and RUN_DIR/model.safetensors. "
        "Ctrl-C saves a checkpoint; --resume continues it.",
    )
    train.add_argument("engine", help="a trainable engine (see `napari-i2i engines`)")
    train.add_argument("--domain-a", type=Path, metavar="DIR", help="unpaired engines: images of domain A")
    train.add_argument("--domain-b", type=Path, metavar="DIR", help="unpaired engines: images of domain B")
    train.add_argument("--classes", type=Path, metavar="DIR",
                       help="class-folder engines (funit): one subfolder of images per class")
    train.add_argument("--holdout-classes", metavar="N|NAME,NAME",
                       help="class-folder engines: keep N classes (drawn with the seed) or the named "
                       "ones out of training, to try translation into unseen classes")
    train.add_argument("--pairs-a", type=Path, metavar="DIR",
                       help="paired engines (step): images of domain A, or side-by-side A|B images "
                       "without --pairs-b")
    train.add_argument("--pairs-b", type=Path, metavar="DIR",
                       help="paired engines: images of domain B, named as their partners in --pairs-a")
    train.add_argument("--stages", metavar="NAME,NAME",
                       help="paired engines (step): the training stages to run, of "
                       "style,generator,finetune,mapper (default: all)")
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
    train.add_argument("--progress-json", action="store_true",
                       help="instead of the progress bar, one JSON line per iteration on standard "
                       'output, {"iteration": i, "iterations": n, "losses": {...}}, and '
                       '{"model": PATH} at the end (for front ends); once nothing reads them any more '
                       "(the front end closed), the run stops as on Ctrl-C")
    train.add_argument("--stop-file", type=Path, metavar="FILE",
                       help="stop as Ctrl-C does (checkpoint saved, exit status 130) once FILE exists: "
                       "a way for front ends to stop a run on any platform")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainers.run import (
        RUN_FILE,
        data_kind,
        make_class_settings,
        make_paired_settings,
        make_settings,
        read_config_file,
        train,
    )

    device = resolve_device(args.device)
    settings = None
    if args.resume and args.stages:
        raise ValueError("--stages cannot change a run being resumed: its stages come from RUN_DIR/run.json")
    if not args.resume:
        kind = data_kind(args.engine)
        _check_data_flags(args, kind)
        overrides = {"size": args.size, "batch": args.batch, "iterations": args.iters, "seed": args.seed}
        config = read_config_file(args.config) if args.config else None
        # Dataset problems are DatasetErrors, a kind of ValueError: reported in one message.
        if kind == "classes":
            if args.classes is None:
                raise ValueError(f"--classes is required for {args.engine} (unless --resume)")
            flag = args.holdout_classes  # a number of classes, or their names
            holdout = None if flag is None else int(flag) if flag.isdigit() else [n for n in flag.split(",") if n]
            settings = make_class_settings(args.engine, args.preset, args.classes, holdout=holdout,
                                           config=config, overrides=overrides)
        elif kind == "paired":
            if args.pairs_a is None:
                raise ValueError(f"--pairs-a is required for {args.engine} (unless --resume)")
            stages = [name.strip() for name in args.stages.split(",")] if args.stages else None
            settings = make_paired_settings(args.engine, args.preset, args.pairs_a, args.pairs_b,
                                            config=config, overrides=overrides,
                                            training={"stages": stages} if stages else None)
        else:
            if args.domain_a is None or args.domain_b is None:
                raise ValueError("--domain-a and --domain-b are required (unless --resume)")
            settings = make_settings(args.engine, args.preset, args.domain_a, args.domain_b,
                                     config=config, overrides=overrides)
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



# The flags of each kind of training data, and what that kind is.
DATA_FLAGS = {
    "unpaired": (("--domain-a", "domain_a"), ("--domain-b", "domain_b")),
    "classes": (("--classes", "classes"), ("--holdout-classes", "holdout_classes")),
    "paired": (("--pairs-a", "pairs_a"), ("--pairs-b", "pairs_b"), ("--stages", "stages")),
}

DATA_KINDS = {
    "unpaired": "two folders of unpaired images (--domain-a DIR --domain-b DIR)",
    "classes": "one folder of class subfolders (--classes DIR)",
    "paired": "aligned image pairs (--pairs-a DIR [--pairs-b DIR])",
}



def _check_data_flags(args: argparse.Namespace, kind: str) -> None:
    """Data flags of the other kinds of training data are an error, not silently ignored."""
    given = [flag for other, flags in DATA_FLAGS.items() if other != kind
             for flag, name in flags if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{args.engine} trains on {DATA_KINDS[kind]}; drop {' and '.join(given)}")

