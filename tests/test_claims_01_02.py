"""The checked claims of notebooks 01 and 02: each verdict function is False on a case where
its claim is false (shuffled, flat, the wrong layer) and True where it holds."""
import numpy as np
import torch

from utils import features
from utils import patches as P
from utils import receptive_field as RF


def clustered(n_groups=4, per_group=4, dim=8, spread=0.1, seed=0):
    """Vectors in tight clusters, one per subject, and the subjects."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim)) * 5
    vectors = np.concatenate([c + spread * rng.normal(size=(per_group, dim)) for c in centres])
    return vectors.astype(np.float32), np.repeat([f"s{i}" for i in range(n_groups)], per_group)


def test_neighbours_share_subject_only_when_the_space_groups_it():
    vectors, subjects = clustered()
    assert features.same_subject_share(vectors, subjects, k=3) == 1.0
    assert features.neighbours_share_subject(vectors, subjects, k=3)
    noise = np.random.default_rng(1).normal(size=vectors.shape)         # ignores the subject
    assert not features.neighbours_share_subject(noise, subjects, k=3)


def test_chance_share_is_about_the_subjects_share_of_the_gallery():
    vectors, subjects = clustered(n_groups=4, per_group=4)
    noise = np.random.default_rng(2).normal(size=vectors.shape)
    chance = features.chance_share(noise, subjects, k=3, quantile=0.5)
    assert abs(chance - 3 / 15) < 0.1          # 3 of the 15 other photos share a subject


def test_closer_in_meaning_needs_features_to_beat_pixels():
    vectors, subjects = clustered()
    noise = np.random.default_rng(3).normal(size=vectors.shape)
    assert features.closer_in_meaning(vectors, noise, subjects, k=3)
    assert not features.closer_in_meaning(noise, vectors, subjects, k=3)     # the wrong way
    assert not features.closer_in_meaning(vectors, vectors, subjects, k=3)   # equal: no gap


def test_same_channels_respond_only_when_their_contrast_ranks_alike():
    gen = torch.Generator().manual_seed(0)
    contrast = torch.rand(32, generator=gen) * 3            # each channel's typical contrast
    generic = torch.randn(6, 32, 8, 8, generator=gen) * contrast[:, None, None]
    assert features.same_channels_respond(generic)
    own = torch.rand(6, 32, generator=gen) * 3                # each photo its own loud channels
    specific = torch.randn(6, 32, 8, 8, generator=gen) * own[:, :, None, None]
    assert not features.same_channels_respond(specific)
    rho, chance = features.channel_agreement(specific)
    assert abs(rho) < chance < 0.2


def test_channel_contrast_ignores_the_padding_frame():
    act = torch.zeros(1, 3, 8, 8)
    act[0, 0, 0, 0] = 100.0                                   # one bright border cell
    act[0, 1, 1:-1, 1:-1] = torch.arange(36.0).view(6, 6)     # structure inside
    act[0, 2, 0] = 50.0                                       # a bright frame edge
    assert features.most_varying_channels(act, 1) == [1]
    assert features.most_varying_channels(act, 1, border=0)[0] in (0, 2)     # an edge wins


def test_dead_filters_are_those_with_no_gain():
    gains = torch.tensor([2.0, 1.5, 3e-9, 0.5, 1e-7, 1.0])
    assert features.dead_filters(gains) == [2, 4]
    assert features.dead_filters(torch.tensor([2.0, 1.5, 0.5, 0.01])) == []   # weak, not dead


def test_rises_at_every_stage():
    assert features.rises_at_every_stage([0.1, 0.2, 0.5, 0.8])
    assert not features.rises_at_every_stage([0.1, 0.3, 0.3, 0.8])        # flat step
    assert not features.rises_at_every_stage([0.1, 0.4, 0.2, 0.8])


def test_photos_per_channel():
    act = torch.zeros(4, 2, 1, 1)
    act[:, 0] = 1.0                     # generic: every photo
    act[2, 1] = 1.0                     # specific: one photo
    assert features.photos_per_channel(act[:, :1]) == 4
    assert features.photos_per_channel(act[:, 1:]) == 1


# --- notebook 02 ----------------------------------------------------------------------------
class FakeBank:
    """What the duplicate check reads: photos of regions, patch boxes, a score per region."""

    def __init__(self, boxes, scores, owner):
        self.boxes, self.scores, self.regions = np.asarray(boxes, float), np.asarray(scores), \
            type("Regions", (), {"image_of": np.asarray(owner)})()

    def patch_boxes(self, layer, channel):
        return self.boxes

    def top_regions(self, layer, channel, k=8, iou=1.0):
        return [P.Hit(int(r), float(self.scores[r]), tuple(self.boxes[r]))
                for r in np.argsort(-self.scores)[:k]]


def grid_boxes(n=100):
    """n disjoint 10×10 boxes on one photo."""
    return [(10 * (i % 10), 10 * (i // 10), 10 * (i % 10) + 10, 10 * (i // 10) + 10) for i in range(n)]


def test_duplicates_without_nms_only_when_the_top_repeats_itself():
    boxes, owner = grid_boxes(), np.zeros(100, int)
    scores = np.arange(100.0)
    assert not P.duplicates_without_nms(FakeBank(boxes, scores, owner), "l", 0)   # all disjoint
    for r in range(92, 100):                     # the 8 best: one spot seen 8 times
        boxes[r] = (50 + r % 3, 50, 60 + r % 3, 60)
    bank = FakeBank(boxes, scores, owner)
    assert P.near_duplicate_pairs(bank, bank.top_regions("l", 0)) == 28
    assert P.duplicates_without_nms(bank, "l", 0)


def gaussian_footprint(size=64, sigma=6.0):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    return np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))


def test_footprint_concentrated_near_its_centre():
    box = (16, 16, 48, 48)
    peaked = gaussian_footprint()
    peaked[:16] = peaked[48:] = 0
    peaked[:, :16] = peaked[:, 48:] = 0
    assert RF.concentrated_near_centre(peaked, box)
    flat = np.zeros((64, 64))
    flat[16:48, 16:48] = 1.0
    assert abs(RF.centre_share(flat, box)[0] - 0.25) < 1e-9
    assert not RF.concentrated_near_centre(flat, box)              # flat: chance
    ring = flat.copy()
    ring[24:40, 24:40] = 0
    assert not RF.concentrated_near_centre(ring, box)              # the border only


def test_smallest_coverage_is_a_corner_unit():
    field = RF.ReceptiveField("l", RF.Axis(5, 4, 1.5), RF.Axis(5, 4, 1.5), (4, 4), 16)
    # unit (0, 0) sees pixels -0.5 .. 3.5 -> clipped box 0 .. 4.5: 4.5² of 16²
    assert abs(RF.smallest_coverage(field) - 4.5 ** 2 / 16 ** 2) < 1e-9
    # shifted by one pixel (asymmetric padding): the bottom-right unit sticks out furthest,
    # 12.5 .. 16 of 16 pixels, where the top-left one sees 0.5 .. 5.5
    shifted = RF.ReceptiveField("l", RF.Axis(5, 4, 2.5), RF.Axis(5, 4, 2.5), (4, 4), 16)
    assert RF.least_covered_unit(shifted) == (3, 3)
    assert abs(RF.smallest_coverage(shifted) - 3.5 ** 2 / 16 ** 2) < 1e-9


class ChannelsBank(FakeBank):
    """A fake bank whose channel c shows the patch boxes ``per_channel[c]``."""

    def __init__(self, per_channel, scores, owner):
        super().__init__(per_channel[0], scores, owner)
        self.per_channel = [np.asarray(b, float) for b in per_channel]

    def patch_boxes(self, layer, channel):
        return self.per_channel[channel]

    def top_regions(self, layer, channel, k=8, iou=1.0):
        boxes = self.per_channel[channel]
        return [P.Hit(int(r), float(self.scores[r]), tuple(boxes[r]))
                for r in np.argsort(-self.scores)[:k]]


def repeating_top(n=100):
    boxes = grid_boxes(n)
    for r in range(n - 8, n):                    # the 8 best: one spot seen 8 times
        boxes[r] = (50 + r % 3, 50, 60 + r % 3, 60)
    return boxes


def test_duplicates_common_counts_channels_beyond_chance():
    scores, owner = np.arange(100.0), np.zeros(100, int)
    assert P.duplicates_common(ChannelsBank([repeating_top()] * 8, scores, owner), "l", range(8))
    assert not P.duplicates_common(ChannelsBank([grid_boxes()] * 8, scores, owner), "l", range(8))
    one = ChannelsBank([repeating_top()] + [grid_boxes()] * 7, scores, owner)
    assert not P.duplicates_common(one, "l", range(8))          # 1 of 8 at 5% each: chance


def test_count_beyond_chance():
    assert P.count_beyond_chance(3, 8)            # P(>= 3 of 8 at 5%) = 0.006
    assert not P.count_beyond_chance(2, 8)        # 0.057
    assert not P.count_beyond_chance(0, 8)


def unit_bank(peak_at, n=40, size=3, seed=0):
    """A bank of n regions (one per photo), one channel on a size×size map, whose maximum
    is always at cell ``peak_at`` (or anywhere, for None); full maps kept."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(0, 1, (n, 1, size, size)).astype(np.float16)
    if peak_at is not None:
        maps[:, 0, peak_at[0], peak_at[1]] += 1
    field = RF.ReceptiveField("l", RF.Axis(3, 4, 1), RF.Axis(3, 4, 1), (size, size), 4 * size)
    regions = P.Regions(None, np.tile([0.0, 0.0, 12.0, 12.0], (n, 1)), np.arange(n))
    bank = P.FeatureBank(regions, {"l": field}, 4 * size)
    flat = maps.astype(np.float32).reshape(n, 1, -1)
    bank.peak, bank.where, bank.maps = {"l": flat.max(2)}, {"l": flat.argmax(2)}, {"l": maps}
    return bank


def test_unit_closest_to_channel_only_where_the_channel_peaks():
    shared = P.shared_with_units(unit_bank((1, 1)), "l", 0, k=8)
    assert shared[1, 1] == 8 and P.unit_closest_to_channel(shared, 1, 1)
    shared = P.shared_with_units(unit_bank((0, 0)), "l", 0, k=8)
    assert not P.unit_closest_to_channel(shared, 1, 1)         # the channel peaks in a corner
    assert not P.unit_closest_to_channel(np.ones((3, 3)), 1, 1)  # every cell shares alike


def test_map_neighbours_skip_overlapping_crops():
    regions = P.Regions(None, np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10],
                                        [0, 0, 10, 10]], float), np.array([0, 0, 0, 1]))
    bank = type("Bank", (), {"regions": regions})()
    xy = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [1.0, 0.0]])
    # region 1 is nearest to 0 on the map but a crop of the same spot: skipped
    assert P.map_neighbour_lists(bank, [0, 1, 2, 3], xy, k=2)[0] == [3, 2]


def test_patch_share_is_the_side_ratio():
    regions = P.Regions(None, np.array([[0, 0, 100, 100], [0, 0, 40, 40]], float), np.zeros(2, int))
    hits = [P.Hit(0, 1.0, (0, 0, 50, 50)), P.Hit(1, 1.0, (0, 0, 20, 20))]
    assert abs(P.patch_share(hits, regions) - 0.5) < 1e-9


def test_labels_gather_on_neighbour_lists():
    photo = np.repeat(np.arange(10), 6)                     # 10 photos, 6 regions each
    own = [[j for j in range(60) if photo[j] == photo[q] and j != q][:5] for q in range(60)]
    assert features.labels_gather(own, photo)
    rng = np.random.default_rng(0)
    scattered = [list(rng.choice([j for j in range(60) if j != q], 5, replace=False))
                 for q in range(60)]
    assert not features.labels_gather(scattered, photo)
    assert features.beats_by_more_than_chance(own, scattered, photo)
    assert not features.beats_by_more_than_chance(scattered, own, photo)


def test_position_slider_only_where_units_can_be_scored():
    import ipywidgets as W
    bank = type("Bank", (), {"maps": {"last": np.zeros((1, 4, 7, 7)), "middle": np.zeros((1, 4, 28, 28))},
                             "channels": lambda self, layer: {"early": 8, "last": 4, "middle": 4}[layer]})()
    channel, position = W.IntSlider(min=0, max=3), W.IntSlider(min=-1, max=48, value=5)
    P.follow_layer(bank, "middle", channel, position)
    assert not position.disabled and position.max == 28 * 28 - 1
    P.follow_layer(bank, "last", channel, position)
    assert not position.disabled and position.value == 5 and channel.max == 3 and position.max == 48
    P.follow_layer(bank, "early", channel, position)
    assert position.disabled and position.value == -1 and channel.max == 7
