"""StEP training: Gram style distances, triplet selection, the four stages (encoder frozen in
stage 2, trained in stage 3, IMLE mapper), staged runs from paired folders (resume, model file,
where the VGG16 weights came from)."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from engines.step import StepEngine
from engines.step.networks import StyleMapper
from napari_i2i.contract.engine_api import StyleMode, StyleRequest
from napari_i2i.core.model_file import load_model, read_model_info
from trainers.run import make_settings, train
from trainers.step import (
    STAGES,
    TRAIN_PRESETS,
    StepTrainConfig,
    build_trainer,
    code_l2,
    gram_style_distances,
    gram_vectors,
    imle_loss,
    lr_factor,
    pairwise_squared_distances,
    select_triplets,
    triplet_loss,
)
from trainers.vgg import load_vgg16

TINY_MODEL = {"dim": 8, "n_downsample": 1, "n_res": 1, "style_encoder_dim": 8, "style_downsample": 2,
              "mapper_dim": 16}
TINY_TRAINING = {"style_pool": 20, "style_batch": 4, "pool_every": 3, "dis_dim": 8, "dis_layers": 2,
                 "dis_scales": 2, "mapper_batch": 8, "mapper_samples": 32,
                 "gram_layers": ["relu1_2", "relu2_2"], "gram_weights": [0.5, 0.5],
                 "perceptual_layers": ["relu1_1", "relu2_1"], "perceptual_layer_weights": [0.5, 1.0]}


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No VGG16 in the torch cache unless a test puts one there (the machine's own cache must not count)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))


def styled_pair(rng, size=16, style=None):
    """A: a gray layout of squares; B: the same layout in one of four colour-and-stripe styles."""
    mask = np.zeros((size, size), bool)
    for _ in range(2):
        top, left = rng.integers(0, size - 5, 2)
        mask[top : top + 5, left : left + 5] = True
    k = int(rng.integers(4)) if style is None else style
    colours = np.random.default_rng(100 + k).uniform(-0.9, 0.9, (2, 3))
    stripes = 0.3 * np.sin(np.arange(size) * (0.5 + k))[None, None, :]
    b = np.where(mask[None], colours[0][:, None, None], colours[1][:, None, None]) + stripes
    a = np.where(mask, 0.6, -0.6)[None].repeat(3, 0)
    return torch.tensor(a, dtype=torch.float32), torch.tensor(np.clip(b, -1, 1), dtype=torch.float32)


class Pairs:
    """In-memory aligned pairs; indices past the end wrap, as the training datasets' do."""

    def __init__(self, n=24, size=16, seed=0):
        rng = np.random.default_rng(seed)
        self.items = [styled_pair(rng, size) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index % len(self.items)]

    def batch(self, start=0, size=4):
        a, b = zip(*(self[start + i] for i in range(size)))
        return torch.stack(a), torch.stack(b)


def make_trainer(seed=0, dataset=None, **training):
    torch.manual_seed(seed)
    engine = StepEngine()
    model = engine.build(engine.config("small", **TINY_MODEL))
    with warnings.catch_warnings():  # the random-weight VGG16 (checked in the run tests)
        warnings.simplefilter("ignore", UserWarning)
        trainer = build_trainer(model, {**TRAIN_PRESETS["small"], **TINY_TRAINING, **training}, torch.device("cpu"))
    trainer.attach_dataset(dataset or Pairs())
    return trainer


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(module, before):
    return all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


# --- pure pieces ------------------------------------------------------------------------------


def test_triplets_come_from_the_nearest_and_the_farthest_of_a_known_distance_matrix():
    positions = torch.randperm(30, generator=torch.Generator().manual_seed(0)).double()  # points on a line
    distances = (positions[:, None] - positions[None, :]).square()
    anchors = torch.arange(30).repeat(200)
    positives, negatives = select_triplets(distances, anchors, 5, 13, torch.Generator().manual_seed(1))
    orders = {a: sorted((j for j in range(30) if j != a), key=lambda j: (distances[a, j].item(), j)) for a in range(30)}
    seen_near, seen_far = {}, {}
    for anchor, positive, negative in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        assert positive in orders[anchor][:5] and negative in orders[anchor][-13:]
        seen_near.setdefault(anchor, set()).add(positive)
        seen_far.setdefault(anchor, set()).add(negative)
    # drawn among all the candidates: with 200 draws each, every one of them shows up
    assert all(len(s) == 5 for s in seen_near.values()) and all(len(s) == 13 for s in seen_far.values())
    # repeatable with a generator; ties go by index
    again = select_triplets(distances, anchors, 5, 13, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], positives) and torch.equal(again[1], negatives)
    ties = torch.ones(20, 20)
    positives, negatives = select_triplets(ties, torch.zeros(50, dtype=torch.long), 5, 13)
    assert set(positives.tolist()) <= {1, 2, 3, 4, 5} and set(negatives.tolist()) <= set(range(7, 20))
    with pytest.raises(ValueError, match="cannot give 5 nearest and 13 farthest"):
        select_triplets(torch.ones(18, 18), torch.tensor([0]), 5, 13)


def test_gram_vectors_give_the_gram_style_loss():
    torch.manual_seed(0)
    x = [torch.randn(2, 3, 4, 5), torch.randn(2, 6, 2, 2)]
    y = [f.flip(0) for f in x]  # image 1's features first
    weights = [0.3, 0.7]
    expected = 0.0
    for w, fx, fy in zip(weights, x, y):
        channels, positions = fx.shape[1], fx.shape[2] * fx.shape[3]
        gx = fx[0].reshape(channels, -1) @ fx[0].reshape(channels, -1).T
        gy = fy[0].reshape(channels, -1) @ fy[0].reshape(channels, -1).T
        expected += w / (4 * channels**2 * positions**2) * (gx - gy).square().sum()
    vx, vy = gram_vectors(x, weights), gram_vectors(y, weights)
    torch.testing.assert_close((vx[0] - vy[0]).square().sum(), expected)
    distances = pairwise_squared_distances(vx)
    torch.testing.assert_close(distances[0, 1], expected)


def test_gram_style_distances_zero_for_identical_images_symmetric_and_texture_aware():
    vgg, source = load_vgg16(None, fallback_seed=0)
    assert source == "random:seed=0"
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(3, 32, 32, generator=generator) * 2 - 1
    stripes = torch.sin(torch.arange(32.0) * 1.5).expand(3, 32, 32)
    shifted = stripes.roll(5, dims=-1)  # the same texture, moved
    images = torch.stack([noise, stripes, noise, shifted])
    distances = gram_style_distances(vgg, images, ["relu1_2", "relu2_2", "relu3_2"])
    assert distances.shape == (4, 4) and torch.equal(distances, distances.T)
    assert torch.all(distances.diagonal() == 0) and distances[0, 2] == 0
    assert distances[1, 3] < 0.2 * distances[1, 0]  # Gram statistics ignore where the texture is
    gray = gram_style_distances(vgg, images[:, :1], ["relu1_2"])
    four = gram_style_distances(vgg, torch.cat([images, images[:, :1]], 1), ["relu1_2"])  # 4 channels
    assert gray.shape == four.shape == (4, 4) and four[0, 2] == 0 and torch.all(four >= 0)


def test_triplet_loss_and_code_l2():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [0.1, 0.0]])
    negative = torch.tensor([[0.0, 0.5], [2.0, 0.0]])
    # hinge per triplet: max(1 − 0.25 + 0.1, 0) = 0.85 and max(0.01 − 4 + 0.1, 0) = 0
    assert triplet_loss(anchor, positive, negative, 0.1).item() == pytest.approx(0.85 / 2)
    assert code_l2(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).item() == pytest.approx(13.0)


def test_lr_is_constant_then_decays_linearly():
    factors = [lr_factor(i, 10, 0.5) for i in range(12)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:10] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert factors[10:] == [0.2, 0.2]  # past the stage (the last stage going on): stays at the end value
    assert lr_factor(3, 10, 0.0) == 1.0


def test_imle_moves_the_mapper_outputs_toward_the_codes():
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(20, 8) * 0.2 + 2, torch.randn(20, 8) * 0.2 - 2])  # two clusters, far out
    mapper = StyleMapper(8, 32, 3)
    optimizer = torch.optim.Adam(mapper.parameters(), 1e-2)
    probe = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))

    def nearest_code_distance():
        with torch.no_grad():
            return torch.cdist(mapper(probe), codes).min(1).values.mean().item()

    def imle_objective():
        with torch.no_grad():
            return imle_loss(codes, mapper(probe))[0].item()

    before, objective_before = nearest_code_distance(), imle_objective()
    for _ in range(150):
        loss, _ = imle_loss(codes, mapper(torch.randn(64, 8)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert nearest_code_distance() < 0.3 * before
    assert imle_objective() < 0.1 * objective_before
    with torch.no_grad():  # both clusters are covered, not only one
        outputs = mapper(probe)
    assert (outputs.mean(1) > 1).float().mean() > 0.2 and (outputs.mean(1) < -1).float().mean() > 0.2


# --- the stages -------------------------------------------------------------------------------


def test_settings_and_schedule():
    paper = StepTrainConfig.from_mapping(TRAIN_PRESETS["paper"])
    assert (paper.triplet_margin, paper.style_code_weight, paper.style_lr, paper.style_beta1) == (0.1, 0.01, 1e-3, 0)
    assert (paper.style_batch, paper.positives_from, paper.negatives_from) == (12, 5, 13)
    assert (paper.gan_weight, paper.perceptual_weight, paper.code_weight) == (1.0, 0.02, 0.01)
    assert (paper.lr, paper.encoder_lr, paper.beta1, paper.beta2) == (1e-3, 1e-4, 0.0, 0.99)
    assert paper.perceptual_layer_weights == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1]
    assert (paper.dis_dim, paper.dis_layers, paper.dis_scales) == (32, 3, 3)
    assert StepTrainConfig.from_mapping({"stages": "mapper,style"}).stages == ["style", "mapper"]
    with pytest.raises(ValueError, match="stages are style, generator"):
        StepTrainConfig.from_mapping({"stages": ["style", "decoder"]})
    with pytest.raises(ValueError, match="style_pool"):
        StepTrainConfig.from_mapping({"style_pool": 18})
    trainer = make_trainer(style_iterations=2, generator_iterations=3, finetune_iterations=0, mapper_iterations=4)
    stages = [(stage.name, local) for stage, local, _ in map(trainer.stage_at, range(11))]
    assert stages == [("style", 0), ("style", 1), ("generator", 0), ("generator", 1), ("generator", 2),
                      ("mapper", 0), ("mapper", 1), ("mapper", 2), ("mapper", 3), ("mapper", 4), ("mapper", 5)]


def test_stage_1_trains_only_the_encoder_on_triplets_of_a_pool():
    trainer = make_trainer()
    model = trainer.model
    encoder, generator, mapper = snapshot(model.style_encoder), snapshot(model.generator), snapshot(model.mapper)
    losses = [trainer.step(None, i) for i in range(4)]  # stage 1 draws its own images
    assert set(losses[0]) == {"stage", "style", "triplet", "code_l2", "triplets_ordered"}
    assert losses[0]["style"] == pytest.approx(losses[0]["triplet"] + 0.01 * losses[0]["code_l2"], rel=1e-5)
    assert not same(model.style_encoder, encoder)
    assert same(model.generator, generator) and same(model.mapper, mapper)
    state = trainer.state
    assert int(state.stage) == 0 and state.done.tolist() == [4, 0, 0, 0]
    assert int(state.pool_id) == 1  # pool_every 3: iteration 3 made a second pool
    assert torch.equal(state.pool_distances, state.pool_distances.T) and state.pool_distances.max() > 0


def test_stage_1_learns_to_order_triplets():
    trainer = make_trainer(style_lr=3e-3, pool_every=100)
    ordered = [trainer.step(None, i)["triplet"] for i in range(40)]
    assert np.mean(ordered[-10:]) < 0.5 * np.mean(ordered[:10])


def test_stage_2_keeps_the_encoder_frozen_and_stage_3_trains_it():
    dataset = Pairs()
    trainer = make_trainer(dataset=dataset, style_iterations=0, generator_iterations=3, finetune_iterations=3,
                           perceptual_weight=0.02, l1_weight=0.0)  # the published losses
    model = trainer.model
    encoder, generator, dis = snapshot(model.style_encoder), snapshot(model.generator), snapshot(trainer.dis)
    for i in range(3):
        losses = trainer.step(dataset.batch(4 * i), i)
        assert losses["stage"] == 2
    assert set(losses) == {"stage", "dis", "gen", "lr_factor", "gan", "perceptual", "code_l2"}
    assert losses["gen"] == pytest.approx(losses["gan"] + 0.02 * losses["perceptual"] + 0.01 * losses["code_l2"],
                                          rel=1e-5)
    assert same(model.style_encoder, encoder)  # bit for bit
    assert not any(p.requires_grad for p in model.style_encoder.parameters())
    assert not same(model.generator, generator) and not same(trainer.dis, dis)
    generator = snapshot(model.generator)
    for i in range(3, 6):
        assert trainer.step(dataset.batch(4 * i), i)["stage"] == 3
    assert not same(model.style_encoder, encoder) and not same(model.generator, generator)
    assert trainer.optimizers()["encoder"].param_groups[0]["lr"] == pytest.approx(1e-4 * lr_factor(2, 3, 0.5))
    assert trainer.state.done.tolist() == [0, 3, 3, 0]


def test_small_preset_swaps_the_perceptual_term_for_l1():
    dataset = Pairs()
    trainer = make_trainer(dataset=dataset, style_iterations=0)
    losses = trainer.step(dataset.batch(), 0)
    assert "perceptual" not in losses
    assert losses["gen"] == pytest.approx(losses["gan"] + 0.01 * losses["code_l2"] + 10 * losses["l1"], rel=1e-5)
    both = make_trainer(dataset=dataset, style_iterations=0, perceptual_weight=0.5)
    losses = both.step(dataset.batch(), 0)
    assert losses["gen"] == pytest.approx(
        losses["gan"] + 0.5 * losses["perceptual"] + 0.01 * losses["code_l2"] + 10 * losses["l1"], rel=1e-5)


def test_stage_4_fits_the_mapper_to_the_training_codes_and_enables_random_styles():
    dataset = Pairs(n=12)
    trainer = make_trainer(dataset=dataset, stages=["mapper"], mapper_iterations=100, mapper_batch=8,
                           mapper_lr=1e-2)
    model = trainer.model
    assert trainer.vgg is None  # no VGG16 needed for the mapper alone
    with torch.no_grad():  # codes far from where the untrained mapper puts its samples
        model.style_encoder.model[-1].bias.add_(1.0)
    codes = trainer.training_codes()
    assert codes.shape == (12, 8)
    probe = torch.randn(128, 8, generator=torch.Generator().manual_seed(5))

    def distance():
        with torch.no_grad():
            return torch.cdist(model.mapper(probe), codes).min(1).values.mean().item()

    encoder, before = snapshot(model.style_encoder), distance()
    assert StyleMode.RANDOM not in model.capabilities.style_modes
    losses = [trainer.step(None, i)["imle"] for i in range(100)]
    assert distance() < 0.5 * before and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert same(model.style_encoder, encoder)
    assert model.mapper_trained and StyleMode.RANDOM in model.capabilities.style_modes
    styles = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", n_samples=4, seed=0)).styles
    assert styles.shape == (4, 8)


def test_a_stage_that_draws_images_needs_the_dataset():
    torch.manual_seed(0)
    engine = StepEngine()
    model = engine.build(engine.config("small", **TINY_MODEL))
    trainer = build_trainer(model, {**TINY_TRAINING, "stages": ["mapper"]}, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="attach_dataset"):
        trainer.step(None, 0)


@pytest.mark.parametrize("where", ["file", "torch-cache"])
def test_vgg_weights_from_a_file_or_the_torch_cache(vgg16_hub, monkeypatch, where):
    hub, path = vgg16_hub
    torch.manual_seed(0)
    engine = StepEngine()
    model = engine.build(engine.config("small", **TINY_MODEL))
    if where == "file":
        trainer = build_trainer(model, {**TINY_TRAINING, "vgg_weights": str(path)}, torch.device("cpu"))
    else:
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
        trainer = build_trainer(model, TINY_TRAINING, torch.device("cpu"))
    assert trainer.vgg_source == f"{where}:{path}"
    event = next(e for e in trainer.events() if e["event"] == "vgg")
    assert event["source"] == trainer.vgg_source and "note" not in event
    assert event["used_for"] == ["gram style distance", "perceptual loss"]
    assert trainer.provenance()["vgg"] == {"source": f"{where}:{path}"}


# --- runs from folders ------------------------------------------------------------------------


def write_pairs(root, n=8, size=24, side_by_side=True):
    rng = np.random.default_rng(0)
    for i in range(n):
        a, b = styled_pair(rng, size)
        a8, b8 = (((t.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8) for t in (a, b))
        if side_by_side:
            (root / "pairs").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([a8[..., 0:1].repeat(3, 2), b8], 1)).save(root / "pairs" / f"{i}.png")
        else:
            for folder, pixels in (("a", a8[..., 0]), ("b", b8)):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / folder / f"{i}.png")
    return (root / "pairs",) if side_by_side else (root / "a", root / "b")


RUN = {"size": 16, "batch": 2, "log_every": 1, "checkpoint_every": 100, "validate_every": 100,
       "model": TINY_MODEL,
       "training": {**TINY_TRAINING, "style_iterations": 2, "generator_iterations": 2, "finetune_iterations": 2,
                    "mapper_iterations": 2}}


def test_paired_settings_from_folders(tmp_path):
    a, b = write_pairs(tmp_path, side_by_side=False)
    settings = make_settings("step", "small", {"pairs_a": a, "pairs_b": b}, config=json.loads(json.dumps(RUN)))
    assert settings.data == "paired" and settings.inputs["pairs_b"] == str(b)
    assert (settings.model["channels_a"], settings.model["channels_b"]) == (1, 3)  # from the images
    assert settings.iterations == 8  # the stages' iterations, added up
    only = make_settings("step", "small", {"pairs_a": a, "pairs_b": b, "stages": ["style", "mapper"]},
                         config=json.loads(json.dumps(RUN)))
    assert only.iterations == 4 and only.training["stages"] == ["style", "mapper"]
    fixed = make_settings("step", "small", {"pairs_a": a, "pairs_b": b}, config=json.loads(json.dumps(RUN)),
                          overrides={"iterations": 5})
    assert fixed.iterations == 5
    default = make_settings("step", "small", {"pairs_a": a, "pairs_b": b})
    assert default.iterations == 300 + 600 + 200 + 500 and default.size == 64
    with pytest.raises(ValueError, match="aligned image pairs"):
        make_settings("step", "small", {"domain_a": a, "domain_b": b})
    with pytest.raises(ValueError, match="unpaired images"):
        make_settings("munit", "small", {"pairs_a": a, "pairs_b": b})


def test_staged_run_resumes_exactly_and_writes_the_whole_model(tmp_path):
    (pairs,) = write_pairs(tmp_path)
    settings = make_settings("step", "small", {"pairs_a": pairs}, config=json.loads(json.dumps(RUN)))
    assert (settings.model["channels_a"], settings.model["channels_b"]) == (3, 3)
    with pytest.warns(UserWarning, match="randomly initialised"):
        whole = train(tmp_path / "whole", settings)
    # the same run stopped in the middle of a triplet pool (iteration 1) and of stage 3 (iteration 5)
    with pytest.warns(UserWarning, match="randomly initialised"):
        assert train(tmp_path / "parts", settings, iterations=1) is not None
    with pytest.warns(UserWarning, match="randomly initialised"):
        train(tmp_path / "parts", resume=True, iterations=5)
    checkpoint = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)
    assert checkpoint["modules"]["state"]["stage"] == STAGES.index("finetune")
    assert checkpoint["modules"]["state"]["done"].tolist() == [2, 2, 1, 0]
    with pytest.warns(UserWarning, match="randomly initialised"):
        parts = train(tmp_path / "parts", resume=True, iterations=8)
    first, second = load_model(whole), load_model(parts)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert {k.split(".")[0] for k in first.model.state_dict()} == {"style_encoder", "generator", "mapper"}
    info = read_model_info(whole)
    assert first.model.mapper_trained and "mapper_trained" not in info.config  # a weight, not architecture
    method = info.provenance["training"]["method"]
    assert method["mapper_trained"] is True
    assert method["vgg"] == {"source": "random:seed=0"}
    assert method["stages"] == {name: {"planned": 2, "done": 2} for name in STAGES}
    assert info.provenance["training"]["pairs_a"] == str(pairs) and info.provenance["training"]["pairs_b"] is None
    assert second.model.mapper_trained
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    vgg_events = [e for e in log if e.get("event") == "vgg"]
    assert len(vgg_events) == 1 and vgg_events[0]["source"] == "random:seed=0" and "randomly" in vgg_events[0]["note"]
    assert [e["stage"] for e in log if "stage" in e] == [1, 1, 2, 2, 3, 3, 4, 4]
    request = StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=1)
    assert first.model.condition(request).styles.shape == (2, 8)


def test_a_run_without_the_mapper_stage_offers_no_random_styles(tmp_path):
    (pairs,) = write_pairs(tmp_path)
    config = json.loads(json.dumps(RUN))
    settings = make_settings("step", "small", {"pairs_a": pairs, "stages": ["generator"]}, config=config)
    path = train(tmp_path / "run", settings)  # small: no perceptual term, so no VGG16 at all
    loaded = load_model(path)
    assert not loaded.model.mapper_trained and loaded.info.provenance["training"]["method"]["mapper_trained"] is False
    assert StyleMode.RANDOM not in loaded.model.capabilities.style_modes
    method = loaded.info.provenance["training"]["method"]
    assert method["stages"] == {"generator": {"planned": 2, "done": 2}} and method["vgg"] is None
