"""The training loop every method shares.

A method supplies a :class:`MethodTrainer` (networks, optimisers, losses and
one update step); the loop owns everything else: batches, autocast, atomic
checkpoints (every ``checkpoint_every`` iterations or ``checkpoint_minutes``,
whichever comes first) with exact resume (gradient scaler included), loss logs
(JSON lines, and TensorBoard when it is installed), validation images, progress
and a clean stop on Ctrl-C.

In several processes (:mod:`trainers.distributed`) every rank runs the loop: gradients are
averaged after each backward pass, the logged losses are the ranks' mean, the stop request
and time-based checkpoints are agreed each iteration, and rank 0 alone writes files; the
checkpoint holds every rank's random state, so a resume with as many ranks is exact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_i2i.contract.trainer_api import MethodTrainer
from napari_i2i.core.model_file import RUN_CHECKPOINT_NAME
from trainers.distributed import GradientAverager, World, trained_parameters
from trainers.run_score import RunScore, run_score

CHECKPOINT_NAME = RUN_CHECKPOINT_NAME
VALIDATION_DIR = "validation"  # in RUN_DIR: ITERATION.png (zero-padded, so names sort by iteration)
TENSORBOARD_DIR = "tensorboard"


@dataclass
class LoopConfig:
    iterations: int
    checkpoint_every: int = 1000
    log_every: int = 10
    validate_every: int = 1000
    seed: int = 0
    checkpoint_minutes: float = 5.0  # also checkpoint once this long has passed since the last; 0: never by time


class ContentLostWarning(UserWarning):
    """The run score's content check failed at a validation (e.g. contrast inverted)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file."""


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    """A TensorBoard ``SummaryWriter`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # not installed: JSON lines only
        return None
    except Exception as error:  # noqa: BLE001  (a broken install must not stop training)
        warnings.warn(f"TensorBoard logging is off: importing it failed ({error})", stacklevel=3)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _numpy_state() -> tuple[torch.Tensor, int, int, float]:
    """numpy's global RNG state in types a weights-only checkpoint may hold."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }


def _set_rng_state(rng: Mapping[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    keys, position, has_gauss, gauss = rng["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(rng["python"])


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _StopRequest:
    """Turns the first Ctrl-C into a request the loop honours after the current step."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> _StopRequest:
        self._previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no signal handling there
            self._previous = None
        return self

    def _handle(self, *_: object) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainLoop:
    """Runs a :class:`MethodTrainer` for ``config.iterations`` steps in ``run_dir``."""

    def __init__(
        self,
        trainer: MethodTrainer,
        batches: Callable[[int], Iterator[Any]],
        config: LoopConfig,
        run_dir: str | os.PathLike,
        validation_batch: Any = None,
        on_progress: Callable[[int, dict[str, float]], None] | None = None,
        on_validate: Callable[[int, MethodTrainer], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        world: World | None = None,
        on_score: Callable[[int, RunScore], None] | None = None,
    ) -> None:
        """``batches(start)`` yields the batch of every iteration from ``start`` on,
        deterministically, so a resumed run sees the batches the first would have.
        ``should_stop`` is asked before every step: True stops as Ctrl-C does (a
        front end's Cancel). With a distributed *world* ``on_progress`` and ``on_validate``
        are called on rank 0 only, with the losses averaged over the ranks. ``on_score`` gets the
        run score (:mod:`trainers.run_score`) of every validation and of the end of the run."""
        self.trainer = trainer
        self.batches = batches
        self.config = config
        self.run_dir = Path(run_dir)
        self.validation_batch = validation_batch
        self.on_progress = on_progress
        self.on_validate = on_validate
        self.should_stop = should_stop
        self.on_score = on_score
        self.last_score: tuple[int, RunScore] | None = None  # (iteration, score) of the latest validation
        self.world = world or World()
        self.iteration = 0
        self.last_saved = time.monotonic()  # when a checkpoint was last written (or the session began)
        self.saved_iteration: int | None = None  # the iteration of the last checkpoint written
        self.writer: Any = None  # TensorBoard, while run() runs and tensorboard is installed
        self.unlogged: dict[str, list[float]] = {}  # per term: [sum, steps] since the last log line
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    # --- checkpoints ------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The checkpoint's contents; with several ranks every rank must call it (it gathers their
        random states: ``rng`` is rank 0's, ``rng_ranks`` every rank's)."""
        trainer = self.trainer
        rng = _rng_state()
        state = {
            "iteration": self.iteration,
            "config": asdict(self.config),
            "modules": {k: m.state_dict() for k, m in trainer.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in trainer.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in trainer.schedulers().items()},
            "scalers": {k: s.state_dict() for k, s in trainer.scalers().items()},
            "rng": rng,
            "world_size": self.world.size,
        }
        if self.world.distributed:
            state["rng_ranks"] = self.world.gather(rng)
        return state

    def save_checkpoint(self) -> Path:
        """Written by rank 0; with several ranks every rank calls it."""
        state = self.state()
        if self.world.is_main:
            _atomic_save(state, self.checkpoint_path)
        self.last_saved, self.saved_iteration = time.monotonic(), self.iteration
        return self.checkpoint_path

    def _checkpoint_due_by_time(self) -> bool:
        minutes = self.config.checkpoint_minutes
        return minutes > 0 and time.monotonic() - self.last_saved >= minutes * 60

    def resume(self) -> int:
        """Restore the last checkpoint of ``run_dir``; returns the iteration reached.

        A file torch cannot read as plain tensors and containers (truncated, random bytes, a
        pickle of other objects: ``weights_only`` never runs its code) or one that does not fit
        this run's networks is a :class:`CheckpointError` naming it.
        """
        path = self.checkpoint_path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from")
        try:  # weights_only: only tensors and plain containers, never arbitrary objects
            with warnings.catch_warnings():  # torch's remarks on a foreign file's pickle protocol: our error says it
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 (zip, pickle and I/O errors alike; torch's text advises unsafe loading)
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt, or not written by "
                                  "napari-i2i); delete it to start the run again") from None
        try:
            self._restore(state)
        except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(f"{path}: a checkpoint that does not fit this run ({type(error).__name__}: "
                                  f"{first_line}); was it copied from another run?") from None
        return self.iteration

    def _restore(self, state: dict[str, Any]) -> None:
        trainer = self.trainer
        for key, module in trainer.modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in trainer.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in trainer.schedulers().items():
            scheduler.load_state_dict(state["schedulers"][key])
        for key, scaler in trainer.scalers().items():
            saved = state.get("scalers", {}).get(key)
            if saved:  # {} when saved disabled (CPU, bf16): a fresh scaler then
                scaler.load_state_dict(saved)
        _set_rng_state(self._own_rng(state))
        self.iteration = int(state["iteration"])

    def _own_rng(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """This rank's random state in *state*: its own when as many ranks saved it, else rank 0's
        (another number of ranks: the run goes on with the same global batches, not bit for bit)."""
        saved_size, world = int(state.get("world_size", 1)), self.world
        if saved_size != world.size and world.is_main:
            warnings.warn(f"{self.checkpoint_path} was written by {saved_size} process(es), this run has "
                          f"{world.size}: it continues with the same global batches, but not bit for bit", stacklevel=3)
        ranks = state.get("rng_ranks")
        if saved_size == world.size and ranks and len(ranks) == world.size:
            return ranks[world.rank]
        return state["rng"]

    # --- running ----------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log_events(self) -> None:
        for event in self.trainer.events():
            self.log_event(event)

    def log_event(self, event: dict[str, Any]) -> None:
        """An event (``{"event": name, ...}``) into the log at the current iteration, and to TensorBoard."""
        if not self.world.is_main:
            return
        self._log({"iteration": self.iteration, **event})
        if self.writer is not None:
            self.writer.add_text("events", json.dumps(event), self.iteration)

    def _log_scalars(self, losses: Mapping[str, float]) -> None:
        writer = self.writer
        if writer is None:
            return
        for name, value in losses.items():
            writer.add_scalar(f"loss/{name}", value, self.iteration)
        for name, optimizer in self.trainer.optimizers().items():
            writer.add_scalar(f"lr/{name}", optimizer.param_groups[0]["lr"], self.iteration)
        for name, scaler in self.trainer.scalers().items():
            if scaler.is_enabled():
                writer.add_scalar(f"grad_scale/{name}", scaler.get_scale(), self.iteration)
        writer.flush()

    def _validate(self) -> None:
        if not self.world.is_main:
            return
        if self.on_validate is not None:
            self.on_validate(self.iteration, self.trainer)
        if self.validation_batch is None:
            return
        self._score()
        images = self.trainer.validation_images(self.validation_batch)
        if images is None:
            return
        from torchvision.utils import save_image

        folder = self.run_dir / VALIDATION_DIR
        folder.mkdir(exist_ok=True)
        images = ((images.float().cpu() + 1) / 2).clamp(0, 1)
        nrow = len(images) // 2 or 1
        path = folder / f"{self.iteration:08d}.png"
        partial = path.with_name(path.name + ".partial")  # renamed when complete: readers never see half
        save_image(images, partial, nrow=nrow, format="png")
        os.replace(partial, path)
        if self.writer is not None:
            from torchvision.utils import make_grid

            self.writer.add_image("validation", make_grid(images, nrow=nrow), self.iteration)
            self.writer.flush()

    def _score(self) -> None:
        """Score the validation batch (rank 0, with one): logged, to TensorBoard, to ``on_score``,
        and a :class:`ContentLostWarning` when the content check fails."""
        translations = self.trainer.scoring_translations(self.validation_batch)
        if not translations:
            return
        result = run_score(translations)
        self.last_score = (self.iteration, result)
        record = result.record()
        self._log({"iteration": self.iteration, "event": "run_score", **record})
        if self.writer is not None:
            for name, value in record.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"run_score/{name}", value, self.iteration)
            self.writer.flush()
        message = result.warning(self.iteration)
        if message is not None:
            self._log({"iteration": self.iteration, "event": "content_lost", "message": message})
            warnings.warn(message, ContentLostWarning, stacklevel=2)
        if self.on_score is not None:
            self.on_score(self.iteration, result)

    def _after_step(self, losses: Mapping[str, float], started: float, by_time: bool) -> None:
        """What follows each step when due: log (each term's mean over the steps since the last
        line, so a term of every other step is seen too), progress (this step's losses), validation
        images, checkpoint (every ``checkpoint_every`` iterations, or *by_time*)."""
        config = self.config
        for name, value in losses.items():  # a term a step leaves out is averaged over the steps that had it
            total = self.unlogged.setdefault(name, [0.0, 0])
            total[0], total[1] = total[0] + float(value), total[1] + 1
        if self.iteration % config.log_every == 0 or self.iteration == config.iterations:
            elapsed = time.perf_counter() - started
            means = {name: total / steps for name, (total, steps) in self.unlogged.items()}
            self.unlogged.clear()
            self._log({"iteration": self.iteration, "seconds": round(elapsed, 3), **means})
            self._log_scalars(means)
        if self.on_progress is not None and self.world.is_main:
            self.on_progress(self.iteration, losses)
        if self.iteration % config.validate_every == 0:
            self._validate()
        if self.iteration % config.checkpoint_every == 0 or by_time:
            self.save_checkpoint()

    def _stop_requested(self, stop: _StopRequest) -> bool:
        return stop.requested or (self.should_stop is not None and self.should_stop())

    def run(self) -> bool:
        """Train to ``config.iterations``; returns False when stopped early (Ctrl-C, ``should_stop``).

        Either way the last state is in ``checkpoint.pt``.
        """
        config = self.config
        started = time.perf_counter()
        self.last_saved = time.monotonic()
        first = self.iteration
        finished = True
        world = self.world
        if world.is_main:  # purge_step: a resumed run hides what an earlier session logged after its checkpoint
            self.writer = _summary_writer(self.run_dir / TENSORBOARD_DIR, purge_step=self.iteration or None)
        averager = GradientAverager(trained_parameters(self.trainer.modules().values(),
                                                       self.trainer.optimizers().values()), world) if world.distributed else None
        try:
            self._log_events()
            with _StopRequest() as stop:
                batches = self.batches(self.iteration)
                while self.iteration < config.iterations:
                    if world.agree(self._stop_requested(stop), False, {})[0]:  # any rank's request stops all
                        finished = False
                        break
                    losses = self.trainer.step(next(batches), self.iteration)
                    self.iteration += 1
                    _, by_time, losses = world.agree(False, self._checkpoint_due_by_time(), losses)
                    self._after_step(losses, started, by_time)
            scored = self.last_score is not None and self.last_score[0] == self.iteration
            if world.is_main and self.validation_batch is not None and self.iteration != first and not scored:
                self._score()  # the end of the run is scored too
            # rank 0 decides: the others could look while its last checkpoint is on its way to disk
            missing = world.is_main and not self.checkpoint_path.exists()
            if (self.iteration != first and self.saved_iteration != self.iteration) or world.agree(False, missing, {})[1]:
                self.save_checkpoint()
        finally:
            if averager is not None:
                averager.remove()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        return finished
