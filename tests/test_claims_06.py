"""Notebook 06's checked claims: each verdict function says False on a counterfactual where
the claim is false, and True where it holds; the convolution-rule exercise refuses the
plausible mistakes. Tiny inputs only, no model."""
import numpy as np
import pytest
import torch
import torch.nn.functional as tf

from utils import exercises as X
from utils import fixations as F
from utils.evaluation import class_discriminative, pointing_hit


# ------------------------------------------------------------------ the set against chance

def grid_points(shape, step):
    """Points spread evenly over an image: the 'uniformly scattered' counterfactual."""
    return [(y, x) for y in range(step // 2, shape[0], step) for x in range(step // 2, shape[1], step)]


def test_an_evenly_spread_set_is_not_more_inside_than_chance():
    shape, box = (200, 200), (50, 50, 150, 150)             # the box covers a quarter
    points = grid_points(shape, 20)                          # 100 points, 25 inside: chance
    assert F.share_inside(points, box) == pytest.approx(0.25)
    assert not F.more_inside_than_chance(points, box, shape)


def test_a_few_points_a_little_above_chance_are_not_enough():
    # 10 of 30 inside a box of 26 % (notebook 06's squirrel: 0.30 of 37 against 0.26)
    shape, box = (100, 100), (0, 0, 26, 100)
    points = [(y, x) for y, x in zip(range(0, 100, 10), range(0, 26, 2))]
    points += [(y, 30 + x) for y in range(0, 100, 5) for x in (0,)]
    assert len(points) == 30 and F.share_inside(points, box) == pytest.approx(10 / 30)
    assert not F.more_inside_than_chance(points, box, shape)


def test_a_set_on_the_object_is_more_inside_than_chance():
    shape, box = (200, 200), (50, 50, 150, 150)
    points = grid_points((100, 100), 10)                     # 100 points in the top-left quarter
    points = [(y + 50, x + 50) for y, x in points[:60]] + grid_points(shape, 50)
    assert F.more_inside_than_chance(points, box, shape)


def test_counted_paths_are_refused_by_the_binomial_test():
    with pytest.raises(TypeError):
        F.more_inside_than_chance({(1, 1): 5}, (0, 0, 2, 2), (4, 4))


# ------------------------------------------------------------------ class-discriminative

def peaked(shape, y, x):
    m = np.zeros(shape)
    m[y, x] = 1.0
    return m


def test_the_same_map_for_both_classes_is_not_class_discriminative():
    halves = [(0, 0, 10, 10), (10, 0, 20, 10)]
    same = peaked((10, 20), 5, 3)
    assert not class_discriminative([same, same], halves)
    assert not class_discriminative([same, same.copy() * 2], halves)   # scaled: still one peak


def test_two_maps_on_the_wrong_photos_are_not_class_discriminative():
    halves = [(0, 0, 10, 10), (10, 0, 20, 10)]
    assert not class_discriminative([peaked((10, 20), 5, 15), peaked((10, 20), 5, 3)], halves)


def test_each_class_on_its_own_photo_is_class_discriminative():
    halves = [(0, 0, 10, 10), (10, 0, 20, 10)]
    assert class_discriminative([peaked((10, 20), 5, 3), peaked((10, 20), 5, 15)], halves)
    with pytest.raises(ValueError):
        class_discriminative([peaked((10, 20), 5, 3)], halves[:1])


def test_pointing_hit_misses_a_peak_away_from_the_box():
    box = (10, 10, 20, 20)
    assert pointing_hit(peaked((60, 60), 15, 15), [box], tolerance=15)
    assert not pointing_hit(peaked((60, 60), 50, 50), [box], tolerance=15)   # 42 px away


# ------------------------------------------------------------------ the blur's σ

def test_the_authors_sigma_is_twenty_pixels_of_the_photo():
    """fixation_heatmap blurs with σ = 20 px of the photo the points live in, as the authors'
    heatmap(img, pts, sigma=20): the same width in pixels on a 224-px and a 448-px photo, not
    the same share of the photo (a map scaled with the photo would be twice as wide at 448)."""
    width = lambda m: (m[m.shape[0] // 2] > 0.5).sum()       # full width at half maximum
    small = F.fixation_heatmap([(112, 112)], (224, 224))[1]
    large = F.fixation_heatmap([(224, 224)], (448, 448))[1]
    reference = F.fixation_map([(224, 224)], (448, 448), sigma=20, grid=None)
    assert np.abs(large - reference).max() < 0.02
    assert width(large) == pytest.approx(width(small), abs=2)
    scaled = F.fixation_map([(224, 224)], (448, 448), sigma=40)
    assert width(scaled) == pytest.approx(2 * width(large), rel=0.1)


# ------------------------------------------------------------------ the conv-rule exercise

def right(a, w, y, x, position):
    window = tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3]    # zero padding 1
    c = int((window * w).sum(dim=(1, 2)).argmax())
    if position == "centre" or not window[c].max() > 0:     # after a ReLU: zero all over
        return c, y, x
    ties = torch.nonzero(window[c] == window[c].max()).tolist()
    i, j = min(ties, key=lambda t: (t[0] - 1) ** 2 + (t[1] - 1) ** 2)   # nearest the centre
    return c, y - 1 + i, x - 1 + j


def first_of_ties(a, w, y, x, position):                   # np.argmax: the top-left tie wins
    window = tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3]
    c = int((window * w).sum(dim=(1, 2)).argmax())
    if position == "centre" or not window[c].max() > 0:
        return c, y, x
    i, j = divmod(int(window[c].argmax()), 3)
    return c, y - 1 + i, x - 1 + j


def channel_by_activation(a, w, y, x, position):           # ignores the weights
    c = int(tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3].sum(dim=(1, 2)).argmax())
    return (c,) + right(a, w, y, x, position)[1:]


def channel_by_single_product(a, w, y, x, position):       # the largest product, not the sum
    products = tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3] * w
    return (int(products.flatten(1).max(1).values.argmax()),) + right(a, w, y, x, position)[1:]


def strongest_contribution(a, w, y, x, position):          # our "strongest", not the demo's
    window = tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3]
    contribution = window * w
    c = int(contribution.sum(dim=(1, 2)).argmax())
    if position == "centre" or not contribution[c].max() > 0:
        return c, y, x
    i, j = divmod(int(contribution[c].argmax()), 3)
    return c, y - 1 + i, x - 1 + j


def no_dead_window(a, w, y, x, position):                   # argmax even where nothing fires
    window = tf.pad(a, (1, 1, 1, 1))[:, y:y + 3, x:x + 3]
    c = int((window * w).sum(dim=(1, 2)).argmax())
    if position == "centre":
        return c, y, x
    i, j = divmod(int(window[c].argmax()), 3)
    return c, y - 1 + i, x - 1 + j


def in_window_coordinates(a, w, y, x, position):
    c, y_in, x_in = right(a, w, y, x, position)
    return c, y_in - y + 1, x_in - x + 1


def without_padding(a, w, y, x, position):                  # window starts at (y, x)
    window = tf.pad(a, (0, 2, 0, 2))[:, y:y + 3, x:x + 3]
    c = int((window * w).sum(dim=(1, 2)).argmax())
    if position == "centre" or not window[c].max() > 0:
        return c, y, x
    i, j = divmod(int(window[c].argmax()), 3)
    return c, y + i, x + j


MISTAKES = [channel_by_activation, channel_by_single_product, strongest_contribution,
            no_dead_window, first_of_ties, in_window_coordinates, without_padding,
            lambda a, w, y, x, position: right(a, w, y, x, "activation"),   # ignores position
            lambda a, w, y, x, position: right(a, w, y, x, "centre"),
            lambda a, w, y, x, position: (lambda c, y_, x_: (c, x_, y_))(*right(a, w, y, x, position))]


def test_the_conv_rule_check_accepts_a_right_answer(capsys):
    assert X.check_conv_rule(right) == True  # noqa: E712 (a Verdict)
    assert capsys.readouterr().out.startswith("Right")


@pytest.mark.parametrize("mistake", range(len(MISTAKES)))
def test_the_conv_rule_check_refuses_each_plausible_mistake(mistake, capsys):
    assert X.check_conv_rule(MISTAKES[mistake]) == False  # noqa: E712
    assert capsys.readouterr().out.startswith("Not yet")


def test_the_hint_names_what_differs(capsys):
    X.check_conv_rule(channel_by_activation)
    X.check_conv_rule(MISTAKES[7])
    X.check_conv_rule(strongest_contribution)
    channel, centre, activation = capsys.readouterr().out.splitlines()
    assert "the channel" in channel and "centre placement" in centre
    assert "activation placement" in activation


def test_the_conv_rule_cases_include_a_dead_window_and_the_border():
    cases = X.conv_rule_cases()
    assert any(y in (0, a.shape[1] - 1) or x in (0, a.shape[2] - 1) for a, _, y, x in cases)
    assert any(float(a[:, y - 1:y + 2, x - 1:x + 2].abs().sum()) == 0 for a, _, y, x in cases if y > 0 and x > 0)
    assert all(torch.all(a >= 0) for a, *_ in cases)        # inputs after a ReLU


def test_an_unanswered_or_crashing_conv_rule(capsys):
    def stub(*args):
        raise NotImplementedError
    assert not X.check_conv_rule(stub)
    assert not X.check_conv_rule(lambda *args: None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == X.NOT_ANSWERED and "raised" in lines[1]


# ------------------------------------------------------------------ verdicts shared with 05 and 11

def test_two_more_hits_than_the_centre_on_nine_objects_do_not_beat_it():
    from utils.evaluation import outperforms
    centre = [True] * 7 + [False] * 2                     # notebook 06: the centre hits 7 of 9
    assert not outperforms([True] * 9, centre)            # 2 wins, 0 losses: p = 0.5
    assert outperforms([True] * 8, [False] * 8)           # 8 wins, 0 losses: p < 0.01


def test_the_same_map_for_both_classes_is_more_alike_than_grad_cams_pair():
    from utils.evaluation import more_alike
    rng = np.random.default_rng(0)
    flat = rng.random((10, 20))
    left, right = np.zeros((10, 20)), np.zeros((10, 20))
    left[:, :10], right[:, 10:] = rng.random((10, 10)) + 1, rng.random((10, 10)) + 1
    assert more_alike([flat, flat * 0.5], [left, right])  # one map for both classes
    assert not more_alike([left, right], [flat, flat])    # a pair that does move with the class


# ------------------------------------------------------------------ train mode

class DropoutNet(torch.nn.Module):
    """conv -> ReLU -> dropout -> global max pool -> linear: dropout in train mode moves the
    strongest channel's maximum, so a walk on a train-mode forward pass would differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.drop = torch.nn.Dropout(0.5)
        self.pool = torch.nn.AdaptiveMaxPool2d(1)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.drop(torch.relu(self.conv(x)))), 1))


def test_fixations_in_train_mode_equal_those_in_eval_mode():
    net, x = DropoutNet().eval(), torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    in_eval = F.backtrack(net, x, 0)
    net.train()
    assert F.backtrack(net, x, 0) == in_eval and net.training
    # the counterfactual: the same walk on forward passes recorded in train mode differs
    graph = F.trace(net)
    walks = []
    for seed in range(5):
        torch.manual_seed(seed)
        walks.append(F.backtrack(net, x, 0, recorded=(graph, F.record(graph, x))))
    assert any(walk != in_eval for walk in walks)


# ------------------------------------------------------------------ chance over the places

PLACES = [(16 + 32 * i, 16 + 32 * j) for i in range(7) for j in range(7)]   # a 7×7 grid on 224 px


def test_points_spread_evenly_over_the_places_are_not_more_inside_than_chance():
    # the box holds 16 of the 49 places (0.33) but covers only 0.20 of the image: against the
    # area, the 49 places look above chance; against the places, they are chance itself
    shape, box = (224, 224), (14, 14, 114, 114)
    assert F.chance_inside(box, shape) == pytest.approx(0.2, abs=0.01)
    assert F.chance_inside(box, shape, PLACES) == pytest.approx(16 / 49)
    assert F.more_inside_than_chance(PLACES, box, shape)                    # the area's verdict
    assert not F.more_inside_than_chance(PLACES, box, shape, places=PLACES)


def test_a_box_holding_no_place_cannot_be_hit():
    shape, box = (224, 224), (20, 20, 44, 44)                   # between the grid's places
    assert F.chance_inside(box, shape, PLACES) == 0
    assert not F.more_inside_than_chance(PLACES[:10], box, shape, places=PLACES)


def test_the_places_inside_the_box_are_more_inside_than_chance():
    shape, box = (224, 224), (0, 0, 128, 128)                   # 16 of the 49 places
    inside = [p for p in PLACES if p[0] < 128 and p[1] < 128]
    assert F.more_inside_than_chance(inside + PLACES[-3:], box, shape, places=PLACES)
    with pytest.raises(ValueError):                             # a point off the places
        F.more_inside_than_chance([(1, 1)], box, shape, places=PLACES)


class StridedNet(torch.nn.Module):
    """conv 3×3 stride 2 -> ReLU -> global average pool -> linear, on 8×8 inputs: a 4×4 map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def test_the_centre_rules_places_are_the_last_maps_cells_the_moving_rules_every_pixel():
    net, x = StridedNet().eval(), torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for rule, n_places in [("centre", 16), ("activation", 64), ("strongest", 64)]:
        points, layers = F.backtrack(net, x, 0, return_layers=True, position=rule)
        places = F.walk_places(net, layers, rule)
        pixels = list(places.values())[-1]                      # the places at the image
        assert len(set(pixels)) == n_places and set(points) <= set(pixels)


# ------------------------------------------------------------------ class discrimination against chance

def scene_row(own, other):
    """One two-object scene as ``study.discrimination`` gives it: (own, other, peak)."""
    return (own, other, None)


def test_a_map_blind_to_the_class_does_not_discriminate_a_scene():
    from utils import study as S
    blind = scene_row((0.4, 0.6), (0.6, 0.4))        # one map for both: A's share on B = B's own
    assert not S.discriminates(blind)
    assert S.discriminates(scene_row((0.52, 0.74), (0.48, 0.26)))


def test_discrimination_above_chance_needs_more_scenes_than_a_quarter_allows():
    from utils import study as S
    passing, failing = scene_row((0.8, 0.8), (0.2, 0.2)), scene_row((0.4, 0.6), (0.6, 0.4))
    assert not S.discriminates_above_chance([failing] * 8)                   # notebook 06: 0 of 8
    assert not S.discriminates_above_chance([passing] + [failing] * 7)       # 1 of 8
    assert not S.discriminates_above_chance([passing] * 4 + [failing] * 4)   # 4 of 8: p = 0.11
    assert S.discriminates_above_chance([passing] * 5 + [failing] * 3)       # 5 of 8: p = 0.03


def test_a_flat_map_puts_no_more_in_the_boxes_than_their_area():
    from utils import study as S
    assert not S.more_in_boxes_than_area([(0.21, 0.21)] * 35)               # ties everywhere
    assert not S.more_in_boxes_than_area([(0.3, 0.2)] * 18 + [(0.1, 0.2)] * 17)
    assert S.more_in_boxes_than_area([(0.4, 0.2)] * 30 + [(0.1, 0.2)] * 5)


def test_a_set_that_loses_every_point_points_nowhere():
    # the centre rule's set on a square scene: points 32 px apart on a 7x7 grid, all outliers
    points = [(16 + 32 * i, 16 + 32 * j) for i in range(7) for j in range(7)]
    kept, heat = F.fixation_heatmap(points, (224, 224))
    assert kept == [] and not np.any(heat)
    assert not pointing_hit(heat, [(0, 0, 40, 40)], 15)                      # not the corner argmax lands on
    assert pointing_hit(F.fixation_heatmap(points + [(20, 20)] * 9, (224, 224))[1], [(0, 0, 40, 40)], 15)


def test_the_authors_list_counts_a_pixel_once_per_colour_channel():
    # out_rem counts repeats: a pixel listed three times (three colour channels) is not isolated
    lonely = [(10, 10)] + [(150 + i, 150) for i in range(25)]
    assert (10, 10) not in F.remove_outliers(lonely, (224, 224))
    assert (10, 10) in F.remove_outliers([(10, 10)] * 3 + lonely[1:], (224, 224))


def test_blurs_one_hit_apart_are_not_told_apart():
    from utils.evaluation import outperforms
    assert not outperforms([True] * 8 + [False], [True] * 7 + [False] * 2)    # 7 vs 8 of 9
    assert not outperforms([True] * 27 + [False] * 8, [True] * 23 + [False] * 12)   # 27 vs 23 of 35, 4 wins


def test_keeping_the_strongest_classifier_inputs():
    a, weight = torch.tensor([1.0, 2.0, 3.0, 0.5]), torch.tensor([[1.0, -1.0, 2.0, 1.0]])
    assert F.fc_rule({(0,)}, a, weight, False) == {(0,), (2,), (3,)}        # every positive one
    assert F.fc_rule({(0,)}, a, weight, False, top=1) == {(2,)}             # the strongest
    assert F.fc_rule({(0,)}, a, weight, False, top=10) == {(0,), (2,), (3,)}  # never a negative one


def test_the_peak_mark_sits_on_the_maximum():
    heat = np.zeros((10, 20))
    heat[7, 3] = 1
    assert F.peak_of(heat) == (3, 7)
    assert F.peak_of(heat, (100, 200)) == pytest.approx((34.5, 74.5))
