"""The frozen VGG16 feature extractor: weight sources, file checks, preprocessing.
Weights files are made here from torchvision's architecture; nothing is downloaded."""

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from trainers import vgg
from trainers.vgg import LAYERS, VggWeightsError, VggWeightsNotFound, load_vgg16

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    return tmp_path / "empty_hub"


def reference_features(path):
    """torchvision's own vgg16 with the file's weights: what our extractor must reproduce."""
    reference = torchvision.models.vgg16(weights=None).eval()
    reference.load_state_dict(torch.load(path, weights_only=True))
    return reference.features


def test_explicit_file_reproduces_torchvision(vgg16_hub, empty_hub):
    _, path = vgg16_hub
    extractor, source = load_vgg16(path, device="cpu")
    assert source == extractor.source == f"file:{path}"
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected_input = ((images + 1) / 2 - MEAN) / STD  # [-1, 1] → ImageNet normalisation
    reference = reference_features(path)
    with torch.no_grad():
        relu5_3, conv1_2, relu2_2 = extractor(images, ("relu5_3", "conv1_2", "relu2_2"))
        assert torch.allclose(relu5_3, reference[: LAYERS.index("relu5_3") + 1](expected_input), atol=1e-5)
        assert torch.allclose(conv1_2, reference[:3](expected_input), atol=1e-5)
        assert torch.allclose(relu2_2, reference[:9](expected_input), atol=1e-5)
    assert relu5_3.shape == (2, 512, 2, 2) and conv1_2.shape == (2, 64, 40, 40)
    assert (conv1_2 < 0).any()  # a conv output, not overwritten by an in-place ReLU


def test_frozen_eval_and_gray_inputs(vgg16_hub):
    _, path = vgg16_hub
    extractor, _ = load_vgg16(path)
    extractor.train()
    assert not extractor.training and not extractor.features.training
    assert not any(p.requires_grad for p in extractor.parameters())
    assert {p.device.type for p in extractor.parameters()} == {"cpu"}
    gray = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(extractor(gray, ("relu3_3",))[0], extractor(gray.expand(-1, 3, -1, -1), ("relu3_3",))[0])
    image = gray.clone().requires_grad_()
    extractor(image, ("relu4_3",))[0].square().mean().backward()  # gradients reach the input
    assert image.grad is not None and image.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="got 2 channels"):
        extractor(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        extractor(gray, ("relu6_1",))


def test_torch_cache_then_nothing_then_random_fallback(vgg16_hub, empty_hub, monkeypatch):
    hub, path = vgg16_hub
    with pytest.raises(VggWeightsNotFound, match="vgg16-397923af.pth"):
        load_vgg16()
    first, source = load_vgg16(fallback_seed=3)
    assert source == "random:seed=3"
    second, _ = load_vgg16(fallback_seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    cached, source = load_vgg16(fallback_seed=3)
    assert source == f"torch-cache:{path}"
    assert torch.equal(cached.features[0].weight, torch.load(path, weights_only=True)["features.0.weight"])


def test_safetensors_and_features_only_layout(vgg16_hub, tmp_path):
    _, path = vgg16_hub
    state = torch.load(path, weights_only=True)
    features_only = {k.removeprefix("features."): v.contiguous() for k, v in state.items() if k.startswith("features.")}
    file = tmp_path / "vgg16_features.safetensors"
    save_file(features_only, str(file))
    extractor, source = load_vgg16(file)
    assert source == f"file:{file}"
    assert torch.equal(extractor.features[28].weight, state["features.28.weight"])


def test_bad_files_are_errors_that_name_the_file(vgg16_hub, tmp_path, empty_hub):
    _, path = vgg16_hub
    missing = tmp_path / "nope.pth"
    with pytest.raises(VggWeightsError, match="nope.pth: no such VGG16 weights file") as caught:
        load_vgg16(missing, fallback_seed=0)  # a named file is never replaced by the fallback
    assert not isinstance(caught.value, VggWeightsNotFound)

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(VggWeightsError, match="truncated.pth: not a readable VGG16 weights file"):
        load_vgg16(truncated)

    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(pickle.dumps({"weights": pytest.approx}, protocol=2))  # an object, not tensors
    with pytest.raises(VggWeightsError, match="foreign.pth: not a readable"):
        load_vgg16(foreign)

    state = torch.load(path, weights_only=True)
    state["features.28.weight"] = torch.zeros(512, 512, 1, 1)
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save(state, wrong_shape)
    with pytest.raises(VggWeightsError, match=r"wrong_shape.pth: .*features.28.weight has shape \(512, 512, 1, 1\)"):
        load_vgg16(wrong_shape)

    other = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(other))
    with pytest.raises(VggWeightsError, match="resnet.safetensors: not VGG16 weights: missing 0.weight"):
        load_vgg16(other)


def test_layer_names_follow_torchvision():
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    assert len(LAYERS) == len(features) == 31
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    for name, module in zip(LAYERS, features):
        assert isinstance(module, kinds[name[:4]]), name
    assert vgg.hub_cache_file().name == "vgg16-397923af.pth"
