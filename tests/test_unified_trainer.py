"""Training the unified-style-space engine: loss terms and weights, gradients for every network,
the smoothness triplet, the domains data kind, runs through trainers.run and the CLI (latent and
reference translation of the model), bit-exact resume, and training from layers."""

import copy

import numpy as np
import pytest
import torch
from conftest import drain
from PIL import Image

from engines.unified import UnifiedEngine
from napari_i2i.contract.registry import default_registry
from napari_i2i.contract.trainer_api import DataOptions
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import load_model, read_model_info
from napari_i2i.frontends.cli import main
from napari_i2i.frontends.train_job import TrainRequest, run_training
from trainers.datasets import DatasetError
from trainers.run import make_settings, train
from trainers.unified import TRAIN_PRESETS, UnifiedTrainConfig, build_trainer
from trainers.unified.losses import (
    StyleMemory,
    decayed_weight,
    dihedral_views,
    nonsaturating_discriminator,
    nonsaturating_generator,
    smoothness_triplet,
    unification_generator,
)

TINY_MODEL = {"dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8, "latent_dim": 4, "style_downsample": 2,
              "flow_hidden": 8}
TINY_TRAINING = {"dis_dim": 8, "dis_blocks": 4, "style_dis_dim": 8}
TINY_RUN = {"size": 16, "batch": 2, "log_every": 1, "checkpoint_every": 2, "model": TINY_MODEL,
            "training": TINY_TRAINING}
TERMS = {"adversarial", "style", "cycle", "diversity", "unification", "smoothness", "identity", "flow_fit"}


def make_trainer(seed=0, **training):
    torch.manual_seed(seed)
    engine = UnifiedEngine()
    model = engine.build(engine.config("small", domains=["a", "b", "c"], **TINY_MODEL))
    return build_trainer(model, {**TRAIN_PRESETS["small"], **TINY_TRAINING, **training}, torch.device("cpu"))


def batch(seed=0, size=16):
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.rand(4, 3, size, size, generator=generator) * 2 - 1 for _ in range(2))
    return (x, torch.tensor([0, 1, 2, 0])), (y, torch.tensor([1, 2, 0, 0]))


def generator_total(losses, config, iteration):
    diversity = losses.get("diversity", 0.0)
    return (losses["adversarial"] + config.style_weight * losses["style"] + config.cycle_weight * losses["cycle"]
            - decayed_weight(config.diversity_weight, iteration, config.diversity_iterations) * diversity
            + config.unification_weight * losses["unification"] + config.smoothness_weight * losses["smoothness"]
            + config.identity_weight * losses["identity"] + config.flow_fit_weight * losses["flow_fit"])


@pytest.mark.parametrize("iteration", [0, 1])  # latent-guided, then reference-guided
def test_every_term_is_finite_weighted_and_every_network_learns(iteration):
    trainer = make_trainer(unification_weight=0.5, smoothness_weight=2.0)
    losses = trainer.step(batch(), iteration)
    latent = iteration == 0
    assert set(losses) == {"dis", "gen", "adversarial_dis", "unification_dis", "r1"} | TERMS - (
        set() if latent else {"diversity"})  # two latent styles on latent iterations only, logged there only
    assert all(np.isfinite(value) for value in losses.values())
    config = trainer.config
    assert losses["gen"] == pytest.approx(generator_total(losses, config, iteration), rel=1e-5)
    assert losses["dis"] == pytest.approx(losses["adversarial_dis"] + 0.5 * losses["unification_dis"]
                                          + losses["r1"], rel=1e-5)
    assert not latent or losses["diversity"] > 0
    learning = {"generator": trainer.network.generator, "style encoder": trainer.network.style_encoder,
                "discriminator": trainer.dis, "style discriminator": trainer.style_dis}
    if iteration == 0:
        learning["latent flow"] = trainer.network.style_flow
    for name, module in learning.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reached the {name}"


def test_published_defaults_and_the_diversity_decay():
    paper = UnifiedTrainConfig.from_mapping(TRAIN_PRESETS["paper"])
    assert (paper.lr, paper.flow_lr, paper.beta1, paper.beta2, paper.weight_decay) == (1e-4, 1e-6, 0.0, 0.99, 1e-4)
    assert (paper.r1_weight, paper.style_weight, paper.cycle_weight, paper.diversity_weight) == (1, 1, 1, 1)
    assert (paper.ema_beta, paper.diversity_iterations) == (0.999, 100_000)
    assert decayed_weight(1.0, 0, 100) == 1.0 and decayed_weight(1.0, 25, 100) == 0.75
    assert decayed_weight(1.0, 100, 100) == decayed_weight(1.0, 500, 100) == 0.0
    trainer = make_trainer()
    groups = trainer.gen_optimizer.param_groups
    assert [g["lr"] for g in groups] == [2e-4, 2e-4]  # small: the flow learns at the same rate
    assert make_trainer(flow_lr=1e-6).gen_optimizer.param_groups[1]["lr"] == 1e-6
    with pytest.raises(ValueError, match="unknown unified training settings"):
        UnifiedTrainConfig.from_mapping({"lambda_uni": 1.0})
    with pytest.raises(ValueError, match="ema_beta"):
        UnifiedTrainConfig.from_mapping({"ema_beta": 1.0})


def test_the_saved_model_is_the_moving_average():
    trainer = make_trainer(ema_beta=0.75, ema_warmup=False)
    assert trainer.modules()["network_ema"] is trainer.model is not trainer.network
    before = [p.clone() for p in trainer.model.parameters()]
    trainer.step(batch(), 0)
    for average, old, new in zip(trainer.model.parameters(), before, trainer.network.parameters()):
        torch.testing.assert_close(average, 0.75 * old + 0.25 * new)
    grid = trainer.validation_images(batch())
    assert grid.shape == (16, 3, 16, 16)


def test_gan_terms_and_the_smoothness_triplet_by_hand():
    zero = torch.zeros(3)
    assert nonsaturating_discriminator(zero, zero).item() == pytest.approx(2 * np.log(2))
    assert nonsaturating_generator(torch.full((2,), 100.0)).item() == pytest.approx(0, abs=1e-6)
    # two images, one domain head: anchors 0 and 3 apart; positives at distance 1 and 0
    styles = torch.tensor([[[0.0, 0.0]], [[3.0, 0.0]]])  # (N, D=1, S=2)
    positive = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    domains = torch.tensor([0, 0])
    # image 0: max(0.5 + 1 − 3, 0) = 0; image 1: max(0.5 + 0 − 3, 0) = 0 → loss 0; margin 3: (1 + 0)/2
    assert smoothness_triplet(styles, domains, positive, 0.5).item() == 0
    assert smoothness_triplet(styles, domains, positive, 3.0).item() == pytest.approx(0.5)
    assert smoothness_triplet(styles[:1], domains[:1], positive[:1], 3.0).item() == 0  # no other image
    images = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    views = dihedral_views(images, torch.Generator().manual_seed(0))
    assert views.shape == images.shape
    for image, view in zip(images, views):
        assert torch.equal(image.flatten().sort().values, view.flatten().sort().values)


def test_unification_moves_the_flow_and_the_encoder_towards_each_other():
    """L_uni alone, on a reference step (the flow drives no translation there): both ways into the
    style space learn from it, each towards the label of the other."""
    logits = torch.tensor([2.0, -1.0])
    assert unification_generator(logits, logits).item() == pytest.approx(
        (nonsaturating_generator(logits) + nonsaturating_generator(-logits)).item())
    trainer = make_trainer(adversarial_weight=0.0, style_weight=0.0, cycle_weight=0.0, diversity_weight=0.0,
                           smoothness_weight=0.0)
    trainer.step(batch(), 1)
    for name, module in {"latent flow": trainer.network.style_flow,
                         "style encoder": trainer.network.style_encoder}.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"L_uni did not reach the {name}"


def test_the_flow_fit_brings_the_flow_and_the_reference_styles_together():
    """``flow_fit_weight`` (ours): the flow learns the likelihood of the (detached) reference styles,
    the encoder keeps them in the subspace the flow draws in; the lift and the generator stay."""
    assert UnifiedTrainConfig().flow_fit_weight == 0 and TRAIN_PRESETS["small"]["flow_fit_weight"] == 0.3
    plain = make_trainer(flow_fit_weight=0.0)
    assert "flow_fit" not in plain.step(batch(), 1)  # off (as in `paper`): not computed, not logged
    trainer = make_trainer(adversarial_weight=0.0, style_weight=0.0, cycle_weight=0.0, diversity_weight=0.0,
                           smoothness_weight=0.0, unification_weight=0.0, identity_weight=0.0,
                           flow_fit_weight=2.0)
    losses = trainer.step(batch(), 1)
    assert losses["gen"] == pytest.approx(2.0 * losses["flow_fit"], rel=1e-5)
    flow_grads = [p.grad for p in trainer.network.style_flow.flow.parameters() if p.grad is not None]
    assert flow_grads and any(g.abs().sum() > 0 for g in flow_grads)
    encoder_grads = [p.grad for p in trainer.network.style_encoder.parameters() if p.grad is not None]
    assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads)  # into the lifted subspace
    for module in (trainer.network.generator, trainer.network.style_flow.lift):
        assert all(p.grad is None or not p.grad.any() for p in module.parameters())
    first = losses["flow_fit"]
    for iteration in range(2, 12):
        later = trainer.step(batch(), iteration | 1)["flow_fit"]
    assert later < first  # the same references grow likelier


def test_r1_on_the_style_discriminator_is_the_squared_slope_at_latent_styles():
    """``style_r1_weight`` (ours): R1 on the style discriminator at its "real" inputs, the latent
    styles, which keeps the two ways into the style space from circling each other."""
    assert UnifiedTrainConfig().style_r1_weight == 0 == UnifiedTrainConfig.from_mapping(
        TRAIN_PRESETS["small"]).style_r1_weight  # measured, kept off: it cost translations
    assert "style_r1" not in make_trainer(style_r1_weight=0.0).step(batch(), 1)  # off: not computed
    with pytest.raises(ValueError, match="style_r1_weight must be ≥ 0, got -1"):
        UnifiedTrainConfig.from_mapping({"style_r1_weight": -1.0})
    trainer = make_trainer(style_r1_weight=3.0)
    reference = copy.deepcopy(trainer.style_dis)
    torch.manual_seed(5)
    losses = trainer.step(batch(), 1)
    assert losses["dis"] == pytest.approx(losses["adversarial_dis"] + losses["unification_dis"] + losses["r1"]
                                          + 3.0 * losses["style_r1"], rel=1e-5)
    flow = make_trainer(style_r1_weight=3.0).network.style_flow  # the flow before its update
    (_, _), (_, target) = batch()
    torch.manual_seed(5)  # the step's latent draws
    styles = flow(torch.randn(4, TINY_MODEL["latent_dim"]), target).detach().requires_grad_()
    (slope,) = torch.autograd.grad(reference(styles, target).sum(), styles)
    assert losses["style_r1"] == pytest.approx(slope.square().sum(1).mean().item(), rel=1e-4)


def test_the_style_memory_keeps_the_latest_reference_styles_of_each_domain():
    memory = StyleMemory(num_domains=3, size=2, style_dim=1)
    memory.push(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([0, 2, 0]))
    memory.push(torch.tensor([[4.0]]), torch.tensor([0]))  # over the oldest of domain 0
    styles, domains = memory.contents()
    assert styles.flatten().tolist() == [4.0, 3.0, 2.0] and domains.tolist() == [0, 0, 2]  # domain 1: none yet
    restored = StyleMemory(num_domains=3, size=2, style_dim=1)
    restored.load_state_dict(memory.state_dict())  # a resumed run goes on with the same memory
    assert torch.equal(restored.contents()[0], styles)
    memory.push(torch.tensor([[5.0], [6.0], [7.0]]), torch.tensor([1, 1, 1]))  # more than it holds at once
    styles, domains = memory.contents()
    assert styles.flatten().tolist() == [4.0, 3.0, 7.0, 6.0, 2.0] and domains.tolist() == [0, 0, 1, 1, 2]


def test_unification_draws_judge_many_latent_styles_against_remembered_references():
    """``unification_draws`` (ours): the style discriminator sees that many latent draws of every
    domain and the memory of recent reference styles (this batch's among them), and the flow
    learns from every draw."""
    assert UnifiedTrainConfig().unification_draws == 0 == UnifiedTrainConfig.from_mapping(
        TRAIN_PRESETS["small"]).unification_draws  # measured, kept off: not closer at every seed
    with pytest.raises(ValueError, match="unification_draws must be ≥ 0, got -2"):
        UnifiedTrainConfig.from_mapping({"unification_draws": -2})
    assert "style_memory" not in make_trainer().modules()
    trainer = make_trainer(unification_draws=3, adversarial_weight=0.0, style_weight=0.0, cycle_weight=0.0,
                           diversity_weight=0.0, smoothness_weight=0.0, identity_weight=0.0, flow_fit_weight=0.0)
    assert trainer.modules()["style_memory"] is trainer.style_memory
    before = copy.deepcopy(trainer.network)
    style_dis = copy.deepcopy(trainer.style_dis)
    (_, _), (y, target) = batch()
    torch.manual_seed(5)
    losses = trainer.step(batch(), 1)
    torch.manual_seed(5)
    torch.randn(4, TINY_MODEL["latent_dim"])  # the batch's own latent styles, drawn first
    draw_domains = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    draws = before.style_flow(torch.randn(9, TINY_MODEL["latent_dim"]), draw_domains)
    references = before.style_encoder(y, target)
    assert torch.allclose(trainer.style_memory.contents()[0], references[target.argsort(stable=True)], atol=1e-6)
    with torch.no_grad():
        expected = nonsaturating_discriminator(style_dis(draws, draw_domains),
                                               style_dis(references[target.argsort(stable=True)], target.sort().values))
    assert losses["unification_dis"] == pytest.approx(expected.item(), rel=1e-5)
    flow_grads = [p.grad for p in trainer.network.style_flow.flow.parameters() if p.grad is not None]
    assert flow_grads and any(g.abs().sum() > 0 for g in flow_grads)


def write_domains(root, names=("he", "ihc", "dab"), count=3, size=24):
    rng = np.random.default_rng(0)
    for index, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            picture = rng.integers(0, 120, (size, size, 3)).astype(np.uint8)
            picture[..., index] += 120
            Image.fromarray(picture).save(folder / f"{i}.png")
    return root


def test_the_domains_kind_names_the_domains_and_serves_pairs(tmp_path):
    root = write_domains(tmp_path / "data")
    settings = make_settings("unified", "small", {"domains": root}, config=TINY_RUN)
    assert settings.model["domains"] == ["dab", "he", "ihc"] and settings.model["channels"] == 3
    kind = default_registry().data_kind("domains")
    data = kind.load(settings.inputs, DataOptions(settings.model, settings.training, 16, None, True, 0))
    (x, source), (y, target) = data.dataset[0]
    assert x.shape == y.shape == (3, 16, 16) and {source, target} <= {0, 1, 2}
    (vx, vs), (vy, vt) = data.validation_batch
    assert vx.shape == vy.shape == (4, 3, 16, 16) and vs.dtype == vt.dtype == torch.long
    assert data.record["domains"] == ["dab", "he", "ihc"]
    lonely = write_domains(tmp_path / "one", names=("he",))
    with pytest.raises(DatasetError, match="two or more domain subfolders, found 1"):
        make_settings("unified", "small", {"domains": lonely}, config=TINY_RUN)
    changed = DataOptions({**settings.model, "domains": ["he", "x", "y"]}, settings.training, 16, None, True, 0)
    with pytest.raises(DatasetError, match="did the subfolders change"):
        kind.load(settings.inputs, changed)


def test_a_cli_run_writes_a_model_that_translates_latent_and_by_reference(tmp_path):
    root = write_domains(tmp_path / "data")
    config = tmp_path / "tiny.toml"
    config.write_text("size = 16\nbatch = 2\n[model]\n" + "".join(f"{k} = {v}\n" for k, v in TINY_MODEL.items())
                      + "[training]\n" + "".join(f"{k} = {v}\n" for k, v in TINY_TRAINING.items()))
    run = tmp_path / "run"
    assert main(["train", "unified", "--domains", str(root), "--out", str(run), "--iters", "2", "--config",
                 str(config), "--device", "cpu", "--quiet"]) == 0
    model = run / "model.safetensors"
    assert read_model_info(model).config["domains"] == ["dab", "he", "ihc"]
    source = root / "he" / "0.png"
    assert main(["translate", str(model), str(source), "--direction", "to_ihc", "-o", str(tmp_path / "latent.png"),
                 "--quiet"]) == 0
    assert main(["translate", str(model), str(source), "--direction", "to_dab", "--reference",
                 str(root / "dab" / "1.png"), "-o", str(tmp_path / "reference.png"), "--quiet"]) == 0
    for name in ("latent.png", "reference.png"):
        assert np.asarray(Image.open(tmp_path / name)).shape == (24, 24, 3)
    assert main(["translate", str(model), str(source), "--direction", "to_xyz", "-o", str(tmp_path / "x.png"),
                 "--quiet"]) == 2


@pytest.mark.parametrize("training", [{}, {"unification_draws": 3}], ids=["preset", "remembered styles"])
def test_resume_continues_bit_for_bit(tmp_path, training):
    root = write_domains(tmp_path / "data")
    settings = make_settings("unified", "small", {"domains": root},
                             config={**TINY_RUN, "iterations": 4, "training": {**TINY_TRAINING, **training}})
    straight = train(tmp_path / "straight", settings)
    train(tmp_path / "resumed", settings, iterations=2)
    resumed = train(tmp_path / "resumed", resume=True, iterations=4)
    for name in ("straight", "resumed"):
        assert (tmp_path / name / "checkpoint.pt").is_file()
    one, two = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=False) for name in ("straight", "resumed"))
    assert ("style_memory" in one["modules"]) == bool(training)
    for module, state in one["modules"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, two["modules"][module][key]), f"{module}.{key} differs after resume"
    a, b = (load_model(path, device=torch.device("cpu")).model.state_dict() for path in (straight, resumed))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_saved_model_keeps_each_domains_mean_training_style_and_translates_with_it(tmp_path):
    root = write_domains(tmp_path / "data")
    settings = make_settings("unified", "small", {"domains": root}, config={**TINY_RUN, "iterations": 2})
    path = train(tmp_path / "run", settings)
    model = load_model(path, device=torch.device("cpu")).model
    assert model.has_typical_styles
    options = DataOptions(settings.model, settings.training, settings.size, settings.resize, settings.flip,
                          settings.seed)
    classes = default_registry().data_kind("domains").load(settings.inputs, options).dataset.classes
    with torch.no_grad():
        for domain, members in enumerate(classes.members):  # one crop of each training image, as served
            images = torch.stack([classes[i][0] for i in members])
            expected = model.style_encoder(images, torch.full((len(members),), domain)).mean(0)
            torch.testing.assert_close(model.typical_styles[domain], expected)
    output = tmp_path / "typical.png"
    assert main(["translate", str(path), str(root / "he" / "0.png"), "--direction", "to_dab", "--typical-style",
                 "-o", str(output), "--quiet"]) == 0
    assert np.asarray(Image.open(output)).shape == (24, 24, 3)


def test_domain_layers_train_it_from_the_train_widgets_job(tmp_path):
    """One domain per layer, named after it (as the Train widget sends them)."""
    rng = np.random.default_rng(0)

    def layer(name, planes):
        return ImageData(rng.integers(0, 4000, (planes, 32, 32), dtype=np.uint16), name, False, (0.0, 4000.0))

    layers = [layer("H&E", 2), layer("IHC", 1)]
    originals = [item.data.copy() for item in layers]
    request = TrainRequest(engine="unified", data=default_registry().data_kind("domains"), run_dir=tmp_path / "run",
                           iterations=2, size=32, device="cpu", layers={"domains": layers})
    outcome = drain(run_training(request))[0]
    loaded = load_model(outcome.model, device=torch.device("cpu"))
    assert loaded.model.capabilities.directions.keys() == {"to_H_E", "to_IHC"}
    for item, original in zip(layers, originals):
        np.testing.assert_array_equal(item.data, original)


def test_the_benchmark_task_has_no_training_pairs_and_every_test_pair():
    from benchmarks.multidomain_measures import held_out_accuracy
    from benchmarks.tasks.multidomain import DOMAINS, multidomain_task

    task = multidomain_task(tile=128, seed=0)
    training_cells = [set(tiles) for tiles in task.train.values()]
    assert sum(map(len, training_cells)) == len(set().union(*training_cells))  # each cell in one domain
    assert all(tiles.keys() == task.test["ihc"].keys() for tiles in task.test.values())
    assert not set(task.test["ihc"]) & set().union(*training_cells)
    for name, tiles in task.test.items():
        file, tile = next(iter(tiles.items()))
        assert np.array_equal(tile, DOMAINS[name](task.test["ihc"][file]))
    generator = torch.Generator().manual_seed(0)
    apart = held_out_accuracy(torch.randn(200, 4, generator=generator) + 3, torch.randn(200, 4, generator=generator))
    alike = held_out_accuracy(torch.randn(200, 4, generator=generator), torch.randn(200, 4, generator=generator))
    assert apart > 0.95 and abs(alike - 0.5) < 0.1


def test_the_benchmark_task_with_a_range_of_looks_keeps_its_cells_and_central_truth():
    from benchmarks.tasks.multidomain import LOOKS, multidomain_task
    from napari_i2i.frontends.sample_data import he_like_restain

    one_look, spread = multidomain_task(tile=128, seed=0), multidomain_task(tile=128, seed=0, look_spread=0.3)
    assert one_look.references == {name: next(iter(tiles)) for name, tiles in one_look.train.items()}
    for name in one_look.train:
        assert spread.train[name].keys() == one_look.train[name].keys()
        assert all(not np.array_equal(spread.train[name][f], tile) for f, tile in one_look.train[name].items())
        assert spread.references[name] in spread.train[name]
        for file, tile in spread.test[name].items():  # the central look of the original cell
            assert np.array_equal(tile, he_like_restain(one_look.test["ihc"][file], **LOOKS[name]))
    assert all(np.array_equal(spread.test[name][f], t) for name in ("he", "hema") for f, t in one_look.test[name].items())
    with pytest.raises(ValueError, match="look_spread"):
        multidomain_task(tile=128, seed=0, look_spread=-0.1)


def test_benchmark_style_gap_is_zero_for_one_distribution_and_grows_apart():
    from benchmarks.multidomain_measures import style_gap

    generator = torch.Generator().manual_seed(0)
    alike = style_gap(torch.randn(256, 8, generator=generator), torch.randn(32, 8, generator=generator))
    near = style_gap(torch.randn(256, 8, generator=generator) + 0.5, torch.randn(32, 8, generator=generator))
    apart = style_gap(torch.randn(256, 8, generator=generator) + 3, torch.randn(32, 8, generator=generator))
    assert alike < 0.02 < near < apart < 1
    codes = torch.randn(16, 8, generator=generator)
    assert style_gap(codes, codes.clone()) == pytest.approx(0.0, abs=0.06)  # within-set pairs exclude self


def test_benchmark_smoothness_is_the_spread_of_the_per_step_change():
    from benchmarks.multidomain_measures import path_changes

    styles = torch.linspace(0, 1, 5)[:, None] * torch.tensor([[3.0, 4.0]])  # steps of length 5/4
    even = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 3, 4, 4)
    per_unit, spread = path_changes(even, styles)
    assert per_unit == pytest.approx(0.5 * 127.5 / 1.25) and spread == pytest.approx(0.0, abs=1e-9)
    jumpy = even.clone()
    jumpy[1:] = jumpy[-1]  # all of the change in the first step
    assert path_changes(jumpy, styles)[1] == pytest.approx(2.0)  # std/mean of (1, 0, 0, 0) · c


def test_benchmark_worst_of_seeds_takes_the_worst_row_and_counts_wins():
    from benchmarks.multidomain import worst_pairs

    def seed(l1_latent):
        return {"pairs": [
            {"pair": "a→b", "method": "identity", "l1": 10.0, "psnr": 20.0, "ssim": 0.5, "diversity": None},
            {"pair": "a→b", "method": "histogram matching", "l1": 8.0, "psnr": 21.0, "ssim": 0.6, "diversity": None},
            {"pair": "a→b", "method": "unified latent", "l1": l1_latent, "psnr": 30.0 - l1_latent, "ssim": 0.7,
             "diversity": 1.0}]}

    rows = worst_pairs([seed(5.0), seed(9.0), seed(7.0)])
    latent = rows[2]
    assert (latent["l1"], latent["psnr"], latent["wins"]) == (9.0, 21.0, 2)


def test_benchmark_settings_reach_every_unified_model_and_ablations_can_be_left_out(tmp_path, capsys):
    import json

    from benchmarks.multidomain import main as multidomain

    out = tmp_path / "md"
    assert multidomain(["--out", str(out), "--iters", "1", "--tile", "128", "--no-munit", "--no-ablations",
                        "--set", "identity_weight=2", "--model-set", "input_gate=true"]) == 0
    [record] = json.loads((out / "results.json").read_text())["seeds"]
    assert list(record["models"]) == ["unified"]
    assert {row["method"] for row in record["pairs"] if row["pair"] == "ihc→he"} == {
        "identity", "histogram matching", "unified latent", "unified reference",
        "unified references (every training tile)", "unified typical style"}
    gates = record["models"]["unified"]["gate_opening"]  # measured for a model with the input gate
    assert set(gates) == set(record["task"]["train"]) and all(0 < g < 1 for g in gates.values())
    assert "unified: mean input gate" in capsys.readouterr().out
    settings = json.loads((out / "seed_0" / "unified" / "run.json").read_text())
    assert settings["training"]["identity_weight"] == 2 and settings["model"]["input_gate"] is True
    with pytest.raises(SystemExit):
        multidomain(["--out", str(out), "--set", "identity_weight"])
    assert "--set and --model-set take KEY=VALUE" in capsys.readouterr().err
