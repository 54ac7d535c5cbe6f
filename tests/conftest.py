"""Shared fixtures. torch is imported before any QApplication exists (napari + torch)."""

import numpy as np
import pytest
import torch  # noqa: F401  (must precede Qt)

# The first torch optimizer imports torch._dynamo and with it triton; importing triton after a
# napari window has loaded OpenGL (mesa) segfaults, e.g. training after test_cli_demo.
import torch._dynamo  # noqa: F401  (must precede napari windows too)

from engines.munit import MunitEngine
from napari_i2i.core.model_file import save_model


@pytest.fixture(scope="session")
def munit_engine():
    return MunitEngine()


def build_munit(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    engine = MunitEngine()
    return engine, engine.build(engine.config("small", **overrides)).eval()


@pytest.fixture
def munit_file(tmp_path):
    """An untrained small MUNIT saved through the real model-file path."""
    engine, model = build_munit()
    path = tmp_path / "munit_small.safetensors"
    save_model(path, engine, model, provenance={"note": "untrained test weights"})
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def vgg16_hub(tmp_path_factory):
    """A torch hub folder whose cache holds torchvision's VGG16 state dict (random
    weights, made here: nothing is downloaded). Returns (hub dir, weights file)."""
    import torchvision

    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    path = hub / "checkpoints" / "vgg16-397923af.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return hub, path


def tiled(model, image, conditioning, tile, context=None, statistics=True):
    """The staged tiled translation of *image*, as the host runs it (context: the model's)."""
    from napari_i2i.core.tiling import TilePlan, translate_tiled

    capabilities = model.capabilities
    plan = TilePlan.make(image.shape[-2], image.shape[-1], tile=tile,
                         context=capabilities.context if context is None else context,
                         multiple=capabilities.size_multiple)
    with torch.inference_mode():
        steps = translate_tiled(model.stages(conditioning), image, plan,
                                model.shared_statistics() if statistics else None, torch.device("cpu"))
        return drain(steps)[0]


def drain(generator):
    """Run a generator to its end: ``(its return value, the list of what it yielded)``."""
    yielded = []
    while True:
        try:
            yielded.append(next(generator))
        except StopIteration as finished:
            return finished.value, yielded


def stages_compose(model, image, conditioning):
    """Assert that the model's stages, run one after another, give ``translate``'s output; return it."""
    from napari_i2i.contract.engine_api import run_stage

    with torch.inference_mode():
        whole = model.translate(image, conditioning)
        composed = image
        for stage in model.stages(conditioning):
            composed = run_stage(stage, composed, lambda: image)
    torch.testing.assert_close(composed, whole)
    return whole


TINY_MUNIT = ({"dim": 8, "mlp_dim": 16, "n_res": 1}, {"dis_dim": 8})  # model, training settings


def tiny_munit_trainer(runtime=None):
    """The registered MUNIT trainer (its ``small`` preset) on a tiny model, seeded."""
    from napari_i2i.contract.registry import default_registry

    registry = default_registry()
    model, training = TINY_MUNIT
    networks, spec = registry.get("munit"), registry.trainer("munit")
    torch.manual_seed(0)
    built = networks.build(networks.config("small", **model))
    return spec.build(built, {**spec.presets["small"], **training}, torch.device("cpu"), runtime=runtime)


def tiny_munit_settings(root, **overrides):
    """Run settings of a tiny MUNIT (16² crops, batch 2, *overrides* on top) on two folders of two
    random RGB images each, made under *root*."""
    from PIL import Image

    from trainers.run import make_settings

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    model, training = TINY_MUNIT
    return make_settings("munit", "small", {"domain_a": root / "a", "domain_b": root / "b"},
                         config={"model": model, "training": training},
                         overrides={"size": 16, "batch": 2, **overrides})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """``build_munit()`` saved and loaded back, as the host loads a model file."""
    from napari_i2i.core.model_file import load_model

    engine, model = build_munit()
    path = tmp_path_factory.mktemp("tiny") / "munit.safetensors"
    save_model(path, engine, model)
    return load_model(path)


def random_image(*shape, seed=0):
    """A reproducible tensor in [-1, 1], like a model input."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def translate_with(model, images, style_request):
    """``model.translate`` under the conditioning of *style_request*, as the host runs it."""
    with torch.inference_mode():
        return model.translate(images, model.condition(style_request))
