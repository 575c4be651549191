"""The registry: the bundled model is the real network, fallback is quick and clear,
cached torchvision weights are used, and every role resolves on every architecture."""
import hashlib
import io
import time

import pytest
import torch
import torchvision
from test_downloads import answer, half_then_hang_up, serve, short_timeouts, silent  # noqa: F401

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
    # the same network torchvision builds from that file (transform_input, no aux heads)
    theirs = torchvision.models.get_model("googlenet", weights="DEFAULT").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), theirs(x))
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def googlenet_file():
    """A GoogLeNet state dict as torchvision saves it (with the auxiliary heads)."""
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    return reference, buffer.getvalue()


@pytest.mark.usefixtures("short_timeouts")
def test_weights_download_from_a_good_server(monkeypatch, tmp_path):
    reference, body = googlenet_file()
    name = f"googlenet-{hashlib.sha256(body).hexdigest()[:8]}.pth"   # torch.hub's naming
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with serve(answer(body)) as server:
        monkeypatch.setattr(models, "weights_url", lambda _: f"{server}/{name}")
        model = load_model("googlenet", device="cpu", verbose=False)
    assert models.cached_weights_path("googlenet") == tmp_path / "checkpoints" / name
    assert models.cached_weights_path("googlenet").read_bytes() == body
    assert isinstance(model, torchvision.models.GoogLeNet) and model.aux1 is None
    assert model.transform_input                  # as torchvision sets it for its weights
    assert torch.equal(model.fc.weight, reference.fc.weight)


@pytest.mark.usefixtures("short_timeouts")
@pytest.mark.parametrize("fault", ["silent", "half then hang up", "wrong file"])
def test_a_failed_weights_download_falls_back_with_one_line(monkeypatch, tmp_path, capsys, fault):
    handle = {"silent": silent, "half then hang up": half_then_hang_up,
              "wrong file": answer(b"not the weights")}[fault]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with serve(handle) as server:
        monkeypatch.setattr(models, "weights_url", lambda _: f"{server}/resnet50-11ad3fa6.pth")
        start = time.perf_counter()
        model = load_model("resnet50", device="cpu")
        assert time.perf_counter() - start < 5
    assert model.spec.name == models.BUNDLED
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "resnet50" in out[0] and models.BUNDLED in out[0]
    assert list((tmp_path / "checkpoints").iterdir()) == []       # no half file kept


def test_a_missing_gpu_is_reported_before_any_work(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_build", lambda name: pytest.fail("built a model anyway"))
    with pytest.raises(RuntimeError, match="no CUDA GPU.*device=None"):
        load_model("alexnet", device="cuda")


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
