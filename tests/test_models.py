"""The registry: the bundled model is the real network, fallback is quick and clear,
cached torchvision weights are used, and every role resolves on every architecture."""
import time

import pytest
import torch
import torchvision

from utils import models
from utils.hooks import capture_activations, count_hooks
from utils.lite0 import LiteNet, load_original
from utils.models import REGISTRY, load_model, top_k


def random_architecture(name):
    if name == models.BUNDLED:
        return load_model(name, device="cpu", verbose=False)
    extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    net = torchvision.models.get_model(name, weights=None, **extra).eval()
    net.spec = REGISTRY[name]
    return net


def test_litenet_equals_the_packaged_network():
    original = load_original()
    ours = LiteNet(original).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), original(x), atol=1e-5)
    relus = [m for m in ours.modules() if isinstance(m, torch.nn.ReLU6)]
    assert len(relus) == len(set(map(id, relus))) == 33   # one module per use


def test_bundled_model_recognises_the_cat(lite):
    predictions = top_k(lite, lite.spec.preprocess("cat"), k=3)
    assert predictions[0][0] == "Egyptian cat" and predictions[0][1] > 0.5
    labels = [label for label, _ in predictions]
    assert {"tiger cat", "tabby"} & set(labels)
    assert abs(sum(p for _, p in top_k(lite, lite.spec.preprocess("cat"), k=1000)) - 1) < 1e-4


def test_offline_falls_back_quickly_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VCNN_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    start = time.perf_counter()
    model = load_model("vgg16", device="cpu")
    assert time.perf_counter() - start < 10
    assert model.spec.name == models.BUNDLED and isinstance(model, LiteNet)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "vgg16" in out[0] and models.BUNDLED in out[0]
    assert not model.training


def test_cached_weights_give_the_torchvision_model(monkeypatch, tmp_path):
    monkeypatch.setenv("VCNN_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = models.cached_weights_path("googlenet")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = load_model("googlenet", device="cpu", verbose=False)
    assert isinstance(model, torchvision.models.GoogLeNet) and model.spec.name == "googlenet"
    assert torch.equal(model.conv1.conv.weight, reference.conv1.conv.weight)
    assert not model.training
    assert not any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_role_resolves_on_every_architecture(name):
    net = random_architecture(name)
    spec = net.spec
    paths = sorted({p for v in spec.layers.values() for p in (v if isinstance(v, list) else [v])})
    with capture_activations(net, paths) as acts:
        with torch.no_grad():
            logits = net(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    assert set(acts) == set(paths)
    assert isinstance(net.get_submodule(spec.layers["first_conv"]), torch.nn.Conv2d)
    assert net.get_submodule(spec.layers["classifier"]).out_features == 1000
    sizes = [acts[p].shape[-1] for p in spec.layers["stages"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]   # early to late
    assert acts[spec.layers["last_conv"]].dim() == 4
    assert acts[spec.layers["penultimate"]].flatten(1).shape[1] == \
        net.get_submodule(spec.layers["classifier"]).in_features
    assert count_hooks(net) == 0


def test_unknown_names_get_clear_errors(lite):
    with pytest.raises(KeyError, match="choose one of"):
        load_model("resnet9000")
    with pytest.raises(KeyError, match="roles"):
        lite.spec.layer("nonsense")
