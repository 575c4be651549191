"""Maximally activating patches: NMS, top regions, caching, the download path."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import utils.patches as P
from utils.models import ModelSpec


def test_nms_by_hand():
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (20, 20, 30, 30), (0, 0, 10, 10), (0, 0, 10, 4)]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    groups = [0, 0, 0, 1, 0]
    # B overlaps A with IoU 81/119 = 0.68 > 0.3: dropped. C is far away: kept. D is the same
    # box as A but in another photo: kept. E is inside A, IoU 40/100 = 0.4: dropped at 0.3,
    # kept at 0.5.
    assert P.nms(boxes, scores, 0.3, groups) == [0, 2, 3]
    assert P.nms(boxes, scores, 0.5, groups) == [0, 2, 3, 4]
    assert P.nms(boxes, scores, 0.3, groups, k=2) == [0, 2]
    assert P.box_iou(np.array(boxes[0]), boxes[1:2])[0] == pytest.approx(81 / 119)


def test_nms_matches_torchvision():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 80, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2))], 1)
    scores = rng.uniform(size=60)
    ours = P.nms(boxes, scores, 0.4)
    theirs = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), 0.4).tolist()
    assert ours == theirs


class SpotNet(nn.Module):
    """Channel 0: brightness (a 3×3 box filter); channel 1: darkness. Two stride-2 stages."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0] = 1 / 27
            self.conv.weight[1] = -1 / 27
            self.conv.bias.zero_()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.gap(self.conv2(x)).flatten(1)


def spot_model():
    torch.manual_seed(0)
    model = SpotNet().eval()
    model.spec = ModelSpec("spotnet", "test", {"penultimate": "gap"}, mean=(0, 0, 0),
                           std=(1, 1, 1), size=32)
    return model


def spot_photos():
    photos = []
    for i, (x, y) in enumerate([(10, 50), (60, 20)]):
        image = np.full((80, 100, 3), 40, np.uint8)
        image[y:y + 8, x:x + 8] = 255            # a white square at a known place
        photos.append((f"spot{i}", Image.fromarray(image)))
    return photos


@pytest.fixture(scope="module")
def bank_and_model():
    model = spot_model()
    regions = P.propose_regions(spot_photos(), per_photo=40, seed=0)
    calls = []
    handle = model.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
    bank = P.build_feature_bank(model, regions, ["pool", "conv2"], unit_layers=["conv2"],
                                batch_size=16, progress=False)
    return model, bank, calls, handle


def test_top_region_is_the_argmax_over_regions(bank_and_model):
    model, bank, _, _ = bank_and_model
    regions = bank.regions
    # activations computed region by region, independently of the bank
    with torch.no_grad():
        per_region = []
        for r in range(len(regions)):
            x = model.spec.normalize(torch.from_numpy(
                np.asarray(regions.warp(r, 32), np.float32) / 255).permute(2, 0, 1)[None])
            per_region.append(model.conv2(model.pool(torch.relu(model.conv(x))))[0])
        maps = torch.stack(per_region)                      # R×3×8×8
    for c, y, x in [(0, 3, 4), (2, 1, 6)]:
        hits = bank.top_regions("conv2", c, y, x, k=5)
        assert hits[0].region == int(maps[:, c, y, x].argmax())
        assert hits[0].score == pytest.approx(float(maps[:, c, y, x].max()), abs=1e-2)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hits = bank.top_regions("conv2", 1)
    assert hits[0].score == pytest.approx(float(maps[:, 1].amax(dim=(1, 2)).max()), abs=1e-5)


def test_brightness_channel_finds_the_white_square(bank_and_model):
    _, bank, _, _ = bank_and_model
    squares = {0: (10, 50), 1: (60, 20)}
    hits = bank.top_regions("pool", 0, k=4, iou=0.3)
    assert {bank.regions.image_of[h.region] for h in hits} == {0, 1}
    for hit in hits:
        x, y = squares[bank.regions.image_of[hit.region]]
        square = np.array([x, y, x + 8, y + 8], float)
        box = np.array(hit.box)
        inter = P.box_iou(square, box[None])[0]
        # the patch (the unit's receptive field in the photo) lies mostly on the square
        overlap = np.prod(np.clip(np.minimum(box[2:], square[2:]) - np.maximum(box[:2], square[:2]), 0, None))
        assert inter > 0 and overlap >= 0.5 * np.prod(box[2:] - box[:2])


def test_features_are_computed_once(bank_and_model):
    model, bank, calls, handle = bank_and_model
    assert calls[0] == 1                             # one blank image traces the receptive fields
    assert sum(calls[1:]) == len(bank.regions)       # then every region goes through once,
    assert len(calls) - 1 == bank.forward_passes == -(-len(bank.regions) // 16)   # in batches
    before = len(calls)
    bank.top_regions("pool", 0)
    bank.top_regions("conv2", 2, 1, 1)
    bank.neighbours(3, 4, "feature")
    again = P.build_feature_bank(model, bank.regions, ["pool", "conv2"], unit_layers=["conv2"],
                                 batch_size=16, progress=False)
    assert again is bank and len(calls) == before     # cached: no forward pass
    handle.remove()


def test_neighbours_and_errors(bank_and_model):
    _, bank, _, _ = bank_and_model
    found = bank.neighbours(0, 5, "feature")
    dist = np.linalg.norm(bank.codes - bank.codes[0], axis=1)
    assert [d for _, d in found] == sorted(d for _, d in found)
    assert found[0][1] == pytest.approx(min(dist[r] for r, _ in found))
    assert all(r != 0 for r, _ in found)
    with pytest.raises(KeyError, match="not recorded"):
        bank.top_regions("conv", 0)
    with pytest.raises(IndexError, match="out of range"):
        bank.top_regions("pool", 5)
    with pytest.raises(KeyError, match="full maps"):
        bank.top_regions("pool", 0, 1, 1)


def test_random_boxes_stay_inside():
    boxes = P.random_boxes(120, 80, 50, np.random.default_rng(0))
    assert tuple(boxes[0]) == (0, 0, 120, 80)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 120 + 1e-9).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 80 + 1e-9).all()
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sides.min() >= 0.15 * 80 / 2.0 ** 0.5 - 1e-9


def test_selective_channels_finds_the_channel_or_unit_whose_top_regions_stand_out():
    rng = np.random.default_rng(0)
    bank = P.FeatureBank(regions=None, fields={"L": None}, size=32)
    peak = rng.normal(size=(200, 5)).astype(np.float32)
    peak[:16, 3] += 10.0                       # channel 3: a few regions far above the rest
    bank.peak["L"] = peak
    maps = rng.normal(size=(200, 5, 2, 2)).astype(np.float16)
    maps[:16, 1, 1, 0] += 10.0                 # unit (1, 1, 0): selective at that position only
    maps[50:66, 4, 0, 0] += 10.0               # unit (4, 0, 0): another one elsewhere
    bank.maps["L"] = maps
    assert P.selective_channels(bank, "L", n=1) == [3]
    assert P.selective_channels(bank, "L", n=1, y=1, x=0) == [1]
    assert P.selective_channels(bank, "L", n=1, y=0, x=0) == [4]


def test_unit_update_in_place_matches_a_fresh_figure(bank_and_model):
    """The explorer's move (another layer, channel or unit) fills the figure in place: the
    same pixels as a fresh figure of that unit, including blank slots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from test_in_place import fresh, in_place, same_picture
    _, bank, _, _ = bank_and_model
    fig = P.show_top_patches(bank, "pool", 0, k=6)
    moved = in_place(fig, P.update_top_patches(fig, bank, "pool", 1, k=6),
                     lambda: P.update_top_patches(fig, bank, "conv2", 2, 3, 4, k=6, iou=0.1))
    same_picture(moved, fresh(P.show_top_patches(bank, "conv2", 2, 3, 4, k=6, iou=0.1)))
    plt.close("all")
