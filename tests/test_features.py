"""Notebook 01's helpers: filter tiles, channel statistics, neighbours and the checks."""
import pytest
import torch

from utils import features
from utils.images import load_image


def test_filter_tiles_rescale_each_filter_on_its_own():
    weights = torch.stack([torch.arange(12.0).view(3, 2, 2), -5 * torch.ones(3, 2, 2)])
    weights[1, 0, 0, 0] = 5.0
    tiles = features.filter_tiles(weights, upscale=3)
    assert tiles[0].shape == (6, 6, 3)
    assert tiles[0].min() == 0 and abs(tiles[0].max() - 1) < 1e-6       # full contrast each
    assert tiles[1][0, 0, 0] == 1 and tiles[1][5, 5, 2] == 0
    assert (tiles[0][:3, :3, 0] == tiles[0][0, 0, 0]).all()              # 3×3 blocks, not blur
    assert torch.allclose(features.filter_norms(weights), weights.flatten(1).norm(dim=1))


def test_channel_rankings_and_statistics():
    act = torch.zeros(2, 4, 3, 3)
    act[0, 1] = 5.0                       # on everywhere: largest mean, no contrast
    act[0, 2, 1, 1] = 9.0                 # one bright spot: most contrast
    assert features.strongest_channels(act, 1) == [1]
    assert features.most_varying_channels(act, 1) == [2]
    assert abs(features.sparsity(act) - (72 - 10) / 72) < 1e-6      # both images count


def test_selectivity_is_lifetime_sparseness_by_hand():
    act = torch.zeros(4, 3, 2, 2)
    act[:, 0] = 2.0                       # channel 0: the same on every image -> 0
    act[1, 1] = 5.0                       # channel 1: one image only -> 1
    act[0, 2], act[3, 2] = 1.0, 1.0       # channel 2: r = (1, 0, 0, 1) -> (1 - .25/.5) / (3/4) = 2/3
    per_channel = [0.0, 1.0, 2 / 3]
    assert abs(features.selectivity(act) - sum(per_channel) / 3) < 1e-6
    act[:, 2] = 0                         # a silent channel is left out, not counted as 0
    assert abs(features.selectivity(act) - 0.5) < 1e-6
    with pytest.raises(ValueError, match="two"):
        features.selectivity(act[:1])


def test_nearest_neighbours_are_sorted_euclidean():
    gallery = torch.tensor([[0.0, 0], [3, 4], [1, 0], [10, 10]])
    indices, distances = features.nearest_neighbours(torch.tensor([0.0, 0]), gallery, k=3)
    assert indices == [0, 2, 1] and distances == [0.0, 1.0, 5.0]


def test_embed_is_the_same_batched_or_one_by_one(lite):
    gallery = [load_image(name) for name in ("cat", "coffee", "brick")]
    batched = features.embed(lite, gallery, batch_size=2)
    single = torch.cat([features.embed(lite, [g]) for g in gallery])
    assert torch.allclose(batched, single, atol=1e-4)


def test_filter_response_is_the_dot_product_with_each_patch():
    x, w = torch.randn(3, 7, 7), torch.randn(3, 3, 3)
    response = features.filter_response(x, w, stride=2)
    assert response.shape == (3, 3)
    assert torch.isclose(response[1, 2], (w * x[:, 2:5, 4:7]).sum(), atol=1e-5)


def test_filter_response_loop_equals_conv2d():
    x, w = torch.randn(3, 9, 8), torch.randn(3, 3, 3)
    expected = torch.nn.functional.conv2d(x[None], w[None], stride=2)[0, 0]
    assert torch.allclose(features.filter_response(x, w, stride=2), expected, atol=1e-5)


def test_effective_gains_fold_the_batchnorm():
    class Spec:
        layers = {"first_conv": "0"}

        def layer(self, role):
            return self.layers[role]
    conv, bn = torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 1.0, 0.5]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 4.0, 0.25]) - bn.eps)
    net = torch.nn.Sequential(conv, bn, torch.nn.ReLU())
    net.spec = Spec()
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    expected = norms * torch.tensor([1.0, 2.0, 0.5, 1.0])
    assert torch.allclose(features.effective_gains(net), expected, atol=1e-5)
    plain = torch.nn.Sequential(conv, torch.nn.ReLU())              # no BatchNorm (AlexNet)
    plain.spec = Spec()
    assert torch.allclose(features.effective_gains(plain), norms)


def test_gallery_photos_all_have_a_subject():
    names = [name for name, _ in features.gallery_photos()]
    assert len(names) == len(set(names)) >= 20
    assert set(names) == set(features.GALLERY_SUBJECTS)


def test_neighbour_counts_find_the_hub():
    points = torch.tensor([[0.0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]])   # the centre is a hub
    counts = features.neighbour_counts(points, k=1)
    assert counts[0] == 4 and counts.sum() == 5
