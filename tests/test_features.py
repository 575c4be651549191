"""Notebook 01's helpers: filter tiles, channel statistics, neighbours and the checks."""
import torch
from PIL import Image

from utils import features
from utils.images import load_image
from utils.models import load_model


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
    assert abs(features.sparsity(act) - (36 - 10) / 36) < 1e-6
    same = torch.rand(3, 10, 2, 2)
    same[:, :4] += 10                     # every image's top-4 are channels 0..3
    assert features.top_channel_overlap(same, k=4) == 1.0
    apart = torch.zeros(2, 8, 1, 1)
    apart[0, :4] = 1
    apart[1, 4:] = 1
    assert features.top_channel_overlap(apart, k=4) == 0.0


def test_nearest_neighbours_are_sorted_euclidean():
    gallery = torch.tensor([[0.0, 0], [3, 4], [1, 0], [10, 10]])
    indices, distances = features.nearest_neighbours(torch.tensor([0.0, 0]), gallery, k=3)
    assert indices == [0, 2, 1] and distances == [0.0, 1.0, 5.0]


def test_feature_space_groups_variants_of_a_photo_better_than_pixels(lite):
    model = lite
    gallery, owner = [], []
    for name in ("cat", "coffee", "brick", "rocket"):
        for variant, picture in features.variants(load_image(name)).items():
            if (name, variant) != ("cat", "original"):
                gallery.append(picture)
                owner.append(name)
    query = load_image("cat")
    by_features, _ = features.nearest_neighbours(features.embed(model, [query])[0],
                                                 features.embed(model, gallery), k=6)
    by_pixels, _ = features.nearest_neighbours(features.pixel_vectors([query])[0],
                                               features.pixel_vectors(gallery), k=6)
    assert sum(owner[i] == "cat" for i in by_features) == 6
    assert sum(owner[i] == "cat" for i in by_features) > sum(owner[i] == "cat" for i in by_pixels)
    batched = features.embed(model, gallery[:3], batch_size=2)
    single = torch.cat([features.embed(model, [g]) for g in gallery[:3]])
    assert torch.allclose(batched, single, atol=1e-4)


def test_variants_keep_size_sensible():
    image = Image.new("RGB", (100, 80), (10, 200, 30))
    for name, picture in features.variants(image).items():
        assert picture.mode == "RGB" and min(picture.size) >= 50, name
