"""The run score (trainers.run_score): its terms on synthetic translations, the content check, and
where it is reported: the training log, the model file, `napari-i2i train` and the Train widget."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import drain
from test_train_cli import EXTRA_MODEL, folders  # noqa: F401  (folders: a fixture)
from test_train_cli import TINY as CLI_TINY
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_i2i.contract.trainer_api import MethodTrainer, ScoringTranslation
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import read_model_info
from napari_i2i.frontends.cli import main
from napari_i2i.frontends.train_job import TrainRequest, run_training, score_summary
from trainers.loop import ContentLostWarning, LoopConfig, TrainLoop
from trainers.run_score import expected_polarity, run_score


def spots(seed: int, count: int = 4, size: int = 32, channels: int = 3) -> torch.Tensor:
    """Bright Gaussian spots on a dark background, in [-1, 1]: a fluorescence-like batch."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.zeros(count, 1, size, size)
    for image in images:
        for y, x in torch.randint(0, size, (6, 2), generator=generator):
            image[0] += torch.exp(-((ys - y) ** 2 + (xs - x) ** 2) / 8.0)
    return (images.clamp(0, 1) * 2 - 1).expand(-1, channels, -1, -1).clone()


def direction(source, translated, target_examples, **extra):
    return ScoringTranslation(source, translated, target_examples, **extra)


def test_identity_keeps_content_and_inverted_contrast_is_content_lost():
    x, examples = spots(0), spots(1)
    kept = run_score([direction(x, x.clone(), examples, reconstructed=x.clone())])
    assert kept.content_lost is None and kept.warning(3) is None
    assert kept.structure == pytest.approx(1.0, abs=1e-3) and kept.reconstruction == pytest.approx(0.0)
    assert kept.score > 0.8

    inverted = run_score([direction(x, -x, examples, reconstructed=x.clone())])
    assert inverted.content_lost == "contrast inverted" and inverted.structure < -0.9
    assert inverted.score < kept.score
    assert inverted.warning(7).startswith("content lost: contrast inverted between input and output at iteration 7")

    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    lost = run_score([direction(x, noise, examples)])
    assert lost.content_lost == "structure lost" and abs(lost.structure) < 0.2 and lost.reconstruction is None


def test_the_worst_direction_decides_the_check_and_terms_are_averaged():
    x, examples = spots(0), spots(1)
    result = run_score([direction(x, x.clone(), examples, direction="a→b"),
                        direction(examples, -examples, x, direction="b→a")])
    assert result.content_lost == "contrast inverted" and result.worst_direction == "b→a"
    assert result.structure == pytest.approx(0.0, abs=1e-3)  # +1 and -1
    assert "(b→a: structure -1.00)" in result.warning(5)


def test_domains_of_opposite_polarity_expect_inverted_contrast():
    fluorescence = spots(0)
    brightfield = -spots(1)  # dark spots on a bright background
    assert expected_polarity(fluorescence, brightfield) == -1 and expected_polarity(fluorescence, spots(2)) == 1
    assert run_score([direction(fluorescence, -fluorescence, brightfield)]).content_lost is None
    assert run_score([direction(fluorescence, fluorescence.clone(), brightfield)]).content_lost == "contrast inverted"


def test_colour_gap_diversity_and_bad_input():
    x, examples = spots(0), spots(1)
    darker = run_score([direction(x, x * 0.5 - 0.5, examples)])
    assert darker.colour_gap > run_score([direction(x, x.clone(), examples)]).colour_gap + 0.1
    varied = run_score([direction(x, x.clone(), examples, second_style=(x + 0.2).clamp(-1, 1))])
    assert 0 < varied.diversity <= 0.1 and varied.record()["diversity"] == round(varied.diversity, 4)

    before = x.clone()
    with pytest.raises(ValueError, match="3 channels, the target images 1"):
        run_score([direction(x, x, spots(1, channels=1))])
    with pytest.raises(ValueError, match="at least one"):
        run_score([])
    with pytest.raises(ValueError, match="differ in size"):
        run_score([direction(x, spots(0, size=16), examples)])
    assert torch.equal(x, before)


def _funit():
    from test_funit_trainer import make_trainer, shape_batches

    (x, _), (y, _), _ = next(shape_batches(0))
    return make_trainer(), (x, y)


def _step():
    from test_step_trainer import Pairs, make_trainer

    return make_trainer(), Pairs().batch()


def _unified():
    from test_unified_trainer import batch, make_trainer

    return make_trainer(), batch()


@pytest.mark.parametrize("make, reconstructed, diversity", [(_funit, True, False), (_step, False, True),
                                                            (_unified, True, True)])
def test_every_engine_family_scores_its_validation_batch(tmp_path, monkeypatch, make, reconstructed, diversity):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))  # no VGG16 of the machine's
    trainer, batch = make()
    result = run_score(trainer.scoring_translations(batch))
    assert np.isfinite(result.score) and -1 <= result.structure <= 1
    assert (result.reconstruction is not None) == reconstructed and (result.diversity is not None) == diversity


# --- the training loop -------------------------------------------------------------------


class InvertingTrainer(MethodTrainer):
    """A one-weight 'translator' that inverts contrast: the content check must fire."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.model = torch.nn.Conv2d(3, 3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0)

    def modules(self):
        return {"model": self.model}

    def optimizers(self):
        return {"model": self.optimizer}

    def step(self, batch, iteration):
        return {"loss": 0.0}

    def scoring_translations(self, batch):
        x_a, x_b = batch
        return [ScoringTranslation(x_a, -x_a, x_b, reconstructed=x_a.clone())]


def test_the_loop_scores_every_validation_and_the_end(tmp_path):
    scores = []
    batches = lambda start: iter(lambda: None, 0)  # noqa: E731  (the trainer ignores its batches)
    loop = TrainLoop(InvertingTrainer(), batches, LoopConfig(iterations=5, validate_every=2, checkpoint_every=5),
                     tmp_path, validation_batch=(spots(0), spots(1)), on_score=lambda i, s: scores.append(i))
    with pytest.warns(ContentLostWarning) as caught:
        loop.run()
    assert [str(w.message).split(" (")[0].rsplit(" ", 1)[-1] for w in caught] == ["2", "4", "5"]
    assert str(caught[0].message).startswith("content lost: contrast inverted between input and output at iteration 2")
    assert scores == [2, 4, 5] and loop.last_score[0] == 5
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    scored = [r for r in records if r.get("event") == "run_score"]
    assert [r["iteration"] for r in scored] == [2, 4, 5]
    assert scored[0]["content_lost"] == "contrast inverted" and scored[0]["structure"] < -0.9
    lost = [r for r in records if r.get("event") == "content_lost"]
    assert len(lost) == 3 and lost[0]["message"].startswith("content lost: contrast inverted")


# --- napari-i2i train ----------------------------------------------------------------------

# the CLI tests' tiny runs and folders, validated (so scored) every second iteration
TINY = "validate_every = 2\n" + CLI_TINY


@pytest.mark.parametrize("engine", sorted(EXTRA_MODEL))
def test_train_prints_the_score_and_the_model_file_keeps_it(folders, tmp_path, capsys, engine):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(model=EXTRA_MODEL[engine]))
    run = tmp_path / "run"
    assert main(["train", engine, "--device", "cpu", "--domain-a", str(folders[0]), "--domain-b", str(folders[1]),
                 "--out", str(run), "--config", str(config), "--iters", "3", "--precision", "fp32"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("run score")]
    assert [line.split(":")[0] for line in lines] == ["run score at iteration 2", "run score at iteration 3"]
    assert "higher is better; structure" in lines[0] and "reconstruction" in lines[0]
    kept = read_model_info(run / "model.safetensors").provenance["training"]["run_score"]
    assert kept["iteration"] == 3 and set(kept) >= {"run_score", "structure", "reconstruction", "colour_gap"}
    assert (kept["diversity"] is None) == (engine == "unit")  # MUNIT samples styles, UNIT has none
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged if r.get("event") == "run_score"] == [2, 3]


def test_progress_json_has_a_score_record_per_validation(folders, tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(model=EXTRA_MODEL["unit"]))
    assert main(["train", "unit", "--device", "cpu", "--domain-a", str(folders[0]), "--domain-b", str(folders[1]),
                 "--out", str(tmp_path / "run"), "--config", str(config), "--iters", "2", "--progress-json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (scored,) = [r["run_score"] for r in records if "run_score" in r]
    assert scored["iteration"] == 2 and isinstance(scored["run_score"], float)
    assert not any("iteration" in r for r in records if "run_score" in r)  # not taken for a progress record


# --- the Train widget ------------------------------------------------------------------------

LOST = "content lost: contrast inverted between input and output at iteration 2 (a→b: structure -0.93)"
CHILD = f"""
import json, sys
score = {{"iteration": 2, "run_score": -1.2, "structure": -0.93, "reconstruction": 0.1, "colour_gap": 0.2,
          "diversity": None, "content_lost": "contrast inverted"}}
for record in ({{"iteration": 1, "iterations": 4, "losses": {{"gen": 1.0}}}},
               {{"iteration": 2, "iterations": 4, "losses": {{"gen": 0.9}}}},
               {{"warning": {LOST!r}}}, {{"run_score": score, "content_lost": {LOST!r}}}):
    print(json.dumps(record), flush=True)
sys.exit(130)
"""


def test_widget_shows_the_score_and_notifies_content_lost_once(qtbot, tmp_path, make_napari_viewer, rng,
                                                                monkeypatch):
    from napari_i2i.frontends import train_job
    from napari_i2i.frontends.train_widget import TrainWidget

    monkeypatch.setattr(train_job, "train_command", lambda request, folders: [sys.executable, "-c", CHILD])
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    widget.domain_a.value = [viewer.add_image(rng.random((64, 64), dtype=np.float32), name="A")]
    widget.domain_b.value = [viewer.add_image(rng.random((64, 64), dtype=np.float32), name="B")]
    widget.iterations.value, widget.device.value, widget.run_folder.value = 4, "cpu", tmp_path / "run"
    start = len(notification_manager.records)
    widget.train()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=60_000)

    assert widget.run_score.value.startswith("run score -1.200 at iteration 2 (higher is better; structure -0.93")
    assert widget.run_score.value.endswith("content lost: contrast inverted")
    warnings = [str(n.message) for n in notification_manager.records[start:]
                if n.severity == NotificationSeverity.WARNING]
    assert warnings == [f"napari-i2i training: {LOST}"]  # live, and not again with the outcome's warnings


def test_train_job_passes_score_records_on_without_moving_the_progress(tmp_path, rng, monkeypatch):
    from napari_i2i.contract.registry import default_registry
    from napari_i2i.frontends import train_job

    monkeypatch.setattr(train_job, "train_command", lambda request, folders: [sys.executable, "-c", CHILD])
    layers = {side: [ImageData(rng.integers(0, 255, (64, 64), dtype=np.uint8), side.upper(), False, (0.0, 255.0))]
              for side in ("domain_a", "domain_b")}
    request = TrainRequest(engine="munit", data=default_registry().data_kind("unpaired"), run_dir=tmp_path / "run",
                           iterations=4, layers=layers)
    outcome, progress = drain(run_training(request))
    scored = [p for p in progress if p.run_score is not None]
    assert len(scored) == 1 and scored[0].content_lost == LOST and scored[0].fraction == 0.5
    assert scored[0].message.startswith("iteration 2/4") and not scored[0].losses
    assert outcome.stopped and outcome.warnings == [LOST]
    assert score_summary({**scored[0].run_score, "content_lost": None}).endswith("colour gap 0.20)")


def test_run_selection_ranks_per_task_engine_and_over_tasks():
    from benchmarks.run_selection import RECIPES, correlation_rows, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [1, 2])) and np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    rows = [{"task": task, "engine": engine, "run_score": score, "structure": score, "reconstruction": None,
             "colour_gap": 0.1, "psnr": psnr, "l1": -psnr}
            for task, sign in (("stain", 1), ("keep_change", -1)) for engine in ("munit", "unit")
            for score, psnr in ((0.1, 10 * sign), (0.5, 12 * sign), (0.9, 15 * sign))]
    table = {group: (n, rho_psnr, rho_l1) for group, n, rho_psnr, rho_l1 in correlation_rows(rows, RECIPES["structure"])}
    assert table["stain / unit"] == (3, pytest.approx(1.0), pytest.approx(1.0))
    assert table["keep_change"][1] == pytest.approx(-1.0)
    assert table["mean over tasks"] == (12, pytest.approx(0.0), pytest.approx(0.0))
