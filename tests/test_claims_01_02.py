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


def test_overlap_beyond_chance():
    assert P.overlap_beyond_chance(range(8), [0, 1, 2, 3, 50, 51, 52, 53], n=780)
    assert not P.overlap_beyond_chance(range(8), [0, 100, 200, 300, 400, 500, 600, 700], n=780)
    assert not P.overlap_beyond_chance(range(8), range(8, 16), n=780)
    assert not P.overlap_beyond_chance(range(8), [0, 1, 2, 3, 4, 5, 6, 7], n=10)  # 8 of 10: chance


def gaussian_footprint(size=64, sigma=6.0):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    return np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))


def test_footprint_inside_the_field_and_concentrated_near_its_centre():
    box = (16, 16, 48, 48)
    peaked = gaussian_footprint()
    peaked[:16] = peaked[48:] = 0
    peaked[:, :16] = peaked[:, 48:] = 0
    assert RF.inside_field(peaked, box)
    assert RF.concentrated_near_centre(peaked, box)
    flat = np.zeros((64, 64))
    flat[16:48, 16:48] = 1.0
    assert abs(RF.centre_share(flat, box)[0] - 0.25) < 1e-9
    assert not RF.concentrated_near_centre(flat, box)              # flat: chance
    ring = flat.copy()
    ring[24:40, 24:40] = 0
    assert not RF.concentrated_near_centre(ring, box)              # the border only
    leaky = peaked.copy()
    leaky[2, 2] = 1e-3                                             # one pixel outside
    assert not RF.inside_field(leaky, box)
    assert not RF.inside_field(np.zeros((64, 64)), box)            # a dead unit proves nothing


def test_smallest_coverage_is_a_corner_unit():
    field = RF.ReceptiveField("l", RF.Axis(5, 4, 1.5), RF.Axis(5, 4, 1.5), (4, 4), 16)
    # unit (0, 0) sees pixels -0.5 .. 3.5 -> clipped box 0 .. 4.5: 4.5² of 16²
    assert abs(RF.smallest_coverage(field) - 4.5 ** 2 / 16 ** 2) < 1e-9


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
    bank = type("Bank", (), {"maps": {"last": None},
                             "channels": lambda self, layer: {"early": 8, "last": 4}[layer]})()
    channel, position = W.IntSlider(min=0, max=3), W.IntSlider(min=-1, max=48, value=5)
    P.follow_layer(bank, "last", channel, position)
    assert not position.disabled and position.value == 5 and channel.max == 3
    P.follow_layer(bank, "early", channel, position)
    assert position.disabled and position.value == -1 and channel.max == 7
