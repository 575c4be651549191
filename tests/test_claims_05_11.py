"""The verdicts printed by notebooks 05 (CAM, Grad-CAM) and 11 (evaluating explanations):
each one, on a case where its claim is false (it must say False) and on one where it holds."""
import math

import numpy as np
import torch

from utils import cam as C
from utils import evaluation as E
from utils import exercises
from utils.localize import box_area, correct_localisation


def blob(shape, centre, sigma=3.0):
    """An H×W map with one Gaussian bump at centre (y, x)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma ** 2))


# ------------------------------------------ 05: the CAM identities (the notebook shows them as numbers)
def gap_head(seed=0, k=6, h=4, w=5):
    """Activations of a tiny GAP network (1×K×h×w), two classes' weights and biases, logits."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(1, k, h, w, generator=g)
    weights, bias = torch.randn(2, k, generator=g), torch.randn(2, generator=g)
    logits = weights @ acts.mean(dim=(2, 3))[0] + bias
    return acts, weights, bias, logits


def test_cam_explains_the_score_of_its_own_class_only():
    acts, weights, bias, logits = gap_head()
    own = C.cam_map(acts, weights[:1])[0]
    other = C.cam_map(acts, weights[1:])[0]
    assert C.cam_explains_score(own, bias[0], logits[0])
    assert not C.cam_explains_score(other, bias[0], logits[0])             # the other class
    normalised = (own - own.min()) / (own.max() - own.min())
    assert not C.cam_explains_score(normalised, bias[0], logits[0])        # a display map


def test_grad_cam_equals_relu_cam_for_the_same_class_only():
    acts, weights, _, _ = gap_head()
    z = acts.shape[-1] * acts.shape[-2]
    gradients = weights[:, :, None, None].expand(2, *acts.shape[1:]) / z    # ∂y^c/∂A = w^c / Z
    cam = C.cam_map(acts, weights[:1])
    assert C.equals_relu_cam(C.grad_cam_map(acts, gradients[:1]), cam)
    assert not C.equals_relu_cam(C.grad_cam_map(acts, gradients[1:]), cam)


# ------------------------------------------------------------------- 05: maps and boxes
def test_more_in_box_than_chance():
    box = (0, 0, 10, 20)                                      # the left half of 20×20
    assert E.more_in_box_than_chance(blob((20, 20), (10, 5)), box)
    assert not E.more_in_box_than_chance(np.ones((20, 20)), box)            # flat = chance
    assert not E.more_in_box_than_chance(blob((20, 20), (10, 15)), box)     # the other half
    small = (0, 0, 5, 5)                                      # 1/16 of the image
    assert E.more_in_box_than_chance(blob((20, 20), (2, 2), 1.0), small, factor=2)
    assert not E.more_in_box_than_chance(np.ones((20, 20)), small, factor=2)


def test_more_in_box_and_more_alike():
    box = (0, 0, 10, 20)
    on, off = blob((20, 20), (10, 5)), blob((20, 20), (10, 15))
    assert E.more_in_box(on, off, box) and not E.more_in_box(off, on, box)
    rng = np.random.default_rng(0)
    a, b = rng.random((20, 20)), rng.random((20, 20))
    same = (a, a + 0.01 * b)                  # a map that barely changes between two classes
    different = (on, off)                     # one that moves with the class
    assert E.more_alike(same, different)
    assert not E.more_alike(different, same)


def test_pointing_hit_tolerates_15_pixels():
    box = (40, 40, 60, 60)                                   # the notebook's default tolerance
    assert E.pointing_hit(blob((100, 100), (50, 70)), box)    # 10 px right of the box
    assert not E.pointing_hit(blob((100, 100), (50, 80)), box)  # 20 px right of it
    assert not E.pointing_hit(blob((100, 100), (50, 70)), box, tolerance=0)


def test_correct_localisation_uses_the_ilsvrc_half():
    truth = (0, 0, 100, 100)
    assert correct_localisation((0, 0, 100, 50), truth)          # IoU 0.5
    assert not correct_localisation((0, 0, 100, 46), truth)      # IoU 0.46
    assert not correct_localisation(None, truth)
    assert box_area((2, 3, 12, 8)) == 50 and box_area(None) == 0


# ------------------------------------------------------------------- 11: sanity checks
def test_degenerate_maps_and_the_sanity_score():
    assert E.is_degenerate(np.zeros((5, 5))) and E.is_degenerate(torch.full((3, 3), 2.0))
    assert not E.is_degenerate(blob((5, 5), (2, 2)))
    # |ρ|: a map that turns into its negative has not stopped depending on the image
    assert math.isclose(E.sanity_score([-0.9, 0.8]), 0.85)
    assert math.isclose(E.sanity_score([0.2, None, None]), 0.2)           # degenerate left out
    assert math.isnan(E.sanity_score([None, None]))


def test_beats_and_ranking():
    scores = {"a": 0.2, "b": 0.5, "c": float("nan")}
    assert E.beats(scores, "a", "b") and not E.beats(scores, "b", "a")
    assert E.beats(scores, "b", "a", lower=False)
    assert not E.beats(scores, "a", "c") and not E.beats(scores, "c", "a")     # NaN never wins
    assert E.ranking(scores) == ["a", "b", "c"]
    assert E.ranking(scores, lower=False) == ["b", "a", "c"]


# ------------------------------------------------------------------- 11: baselines, pointing
def test_centre_and_random_maps():
    centre = E.centre_map((31, 41))
    assert E.peak(centre) == (15, 20)
    assert E.pointing_hit(centre, [(18, 13, 23, 18)], tolerance=0)          # a box on the centre
    assert not E.pointing_hit(centre, [(0, 0, 8, 8)], tolerance=2)           # a corner box
    noise = E.random_map((50, 50))
    assert noise.shape == (50, 50) and 0.4 < noise.mean() < 0.6
    assert abs(E.rank_correlation(noise, blob((50, 50), (25, 25)))) < 0.1


def test_chance_hit_rate():
    assert E.chance_hit_rate((0, 0, 10, 10), (10, 10), tolerance=0) == 1.0
    assert math.isclose(E.chance_hit_rate((0, 0, 5, 10), (10, 10), tolerance=0), 0.6)  # x ≤ 5 inclusive
    assert E.chance_hit_rate((0, 0, 5, 10), (10, 10), tolerance=3) > 0.6


def test_sign_test_and_outperforms():
    assert E.sign_test(0, 0) == 1.0
    assert math.isclose(E.sign_test(5, 0), 2 / 32)
    assert math.isclose(E.sign_test(6, 0), 2 / 64)
    # 12 images: the method hits all, the baseline none -> significant
    assert E.outperforms([True] * 12, [False] * 12)
    # the same hits as the baseline, or too few differing images -> not significant
    assert not E.outperforms([True] * 12, [True] * 12)
    assert not E.outperforms([True] * 5, [False] * 5)                       # p = 0.0625
    assert not E.outperforms([False] * 12, [True] * 12)                     # the baseline wins
    assert not E.outperforms([True, False] * 6, [False, True] * 6)          # an even split


def test_above_chance_and_the_power_of_a_small_study():
    rates = [0.25] * 12
    assert E.above_chance([True] * 12, rates)                              # 12/12 at chance 1/4
    assert not E.above_chance([True, False, False, False] * 3, rates)      # what chance scores
    assert not E.above_chance([False] * 12, rates)                          # a map that always misses
    assert not E.above_chance([True] * 4, [0.5] * 4)                        # 4/4 at 1/2: p = 1/16
    assert math.isclose(E.chance_p_value([True, True], [0.5, 0.2]), 0.1)
    assert E.chance_p_value([False, False], [0.5, 0.2]) == 1.0
    assert E.discordant_needed() == 6 and E.discordant_needed(0.1) == 5


def test_edge_map_points_at_an_edge_and_ignores_the_model():
    x = torch.zeros(1, 3, 40, 40)
    x[..., 25:35, 25:35] = 1.0                          # a bright square on a flat image
    edges = E.edge_map(x)
    assert edges.shape == (40, 40)
    assert E.pointing_hit(edges, [(25, 25, 35, 35)], tolerance=1)
    assert not E.pointing_hit(edges, [(0, 0, 10, 10)], tolerance=1)        # not on the flat corner
    assert E.is_degenerate(E.edge_map(torch.zeros(1, 3, 8, 8)))            # no edge, no ranking


# ------------------------------------------------------------------- 11: the exercise
def test_check_lowest_deletion(capsys):
    areas = {"gradient": 0.05, "occlusion": 0.02, "CAM": 0.03}
    assert exercises.check_lowest_deletion("occlusion", areas)
    assert not exercises.check_lowest_deletion("CAM", areas)
    out = capsys.readouterr().out
    assert "Not yet" in out and "'occlusion'" not in out.split("Not yet")[1]    # no answer in the hint
    assert not exercises.check_lowest_deletion(None, areas)
    assert capsys.readouterr().out.strip() == exercises.NOT_ANSWERED
    assert not exercises.check_lowest_deletion("Occlusion", areas)
    tied = {"CAM": 0.13747, "Grad-CAM": 0.13751, "gradient": 0.2}             # equal within 1e-3
    assert exercises.check_lowest_deletion("CAM", tied) and exercises.check_lowest_deletion("Grad-CAM", tied)
    assert not exercises.check_lowest_deletion("gradient", tied)
    assert not exercises.check_lowest_deletion("CAM", {"CAM": 0.14, "Grad-CAM": 0.13})   # 0.01 apart


# ------------------------------------------------------------------- 11: the localisation study
def study_pairs(boxes, size=60):
    """Study-like (scene, object) pairs on a size×size frame: one scene per box, or one scene
    holding two boxes when a pair of boxes is given."""
    from utils.study import Scene, StudyObject
    pairs = []
    for i, item in enumerate(boxes):
        group = item if isinstance(item[0], tuple) else [item]
        scene = Scene(f"scene {i}", "two objects" if len(group) == 2 else "composed", None,
                      [StudyObject(f"class {k}", k, box) for k, box in enumerate(group)])
        pairs += [(scene, obj) for obj in scene.objects]
    return pairs


def test_mostly_off_centre():
    from utils import study as S
    corners = [(0, 0, 12, 12), (48, 0, 60, 12), (0, 48, 12, 60), (48, 48, 60, 60)]
    assert S.mostly_off_centre(study_pairs(corners), 60, tolerance=5)
    centred = corners[:2] + [(20, 20, 40, 40)] * 2                 # half the boxes on the centre
    assert not S.mostly_off_centre(study_pairs(centred), 60, tolerance=5)


def test_more_in_boxes_than_area():
    from utils import study as S
    assert S.more_in_boxes_than_area([(0.6, 0.2)] * 10)
    assert not S.more_in_boxes_than_area([(0.2, 0.2)] * 10)           # a flat map: ties only
    assert not S.more_in_boxes_than_area([(0.1, 0.2)] * 10)           # less than the area
    assert not S.more_in_boxes_than_area([(0.6, 0.2)] * 5)            # 5 of 5: p = 1/16
    assert not S.more_in_boxes_than_area([(0.6, 0.2), (0.1, 0.2)] * 6)


def test_discriminates_above_chance_needs_the_class_to_move_the_map():
    from utils import study as S
    left, right = (0, 20, 20, 40), (40, 20, 60, 40)
    pairs = study_pairs([(left, right)] * 4)
    on_left, on_right = blob((60, 60), (30, 10)), blob((60, 60), (30, 50))
    follows = [on_left, on_right] * 4                               # each class on its own object
    rows = S.discrimination(follows, pairs)
    assert all(S.discriminates(r) and r[2] for r in rows) and S.discriminates_above_chance(rows)
    same = [on_left, on_left] * 4                                   # one map for both classes
    assert not S.discriminates_above_chance(S.discrimination(same, pairs))
    swapped = [on_right, on_left] * 4                               # the other class's map
    assert not S.discriminates_above_chance(S.discrimination(swapped, pairs))
    assert not S.discriminates_above_chance(S.discrimination(follows[:4], pairs[:4]))   # 2 scenes: p = 1/16


def test_told_apart_needs_enough_items_going_one_way():
    from utils import study as S
    table = {"a": {"passed": [True] * 6 + [False] * 2}, "b": {"passed": [False] * 8},
             "c": {"passed": [True] * 5 + [False] * 3}}
    assert S.told_apart(table, ["a", "b", "c"], "passed") == [("a", "b")]   # 6-0 splits: p = 1/32
    assert S.told_apart(table, ["c", "b"], "passed") == []                   # 5-0: p = 1/16
    same = {"a": {"hits": [True, False] * 6}, "b": {"hits": [True, False] * 6}}
    assert S.told_apart(same, ["a", "b"], "hits") == []


def test_overlapping_boxes():
    from utils.study import Scene, StudyObject
    apart = Scene("apart", "photo", None, [StudyObject("a", 0, (0, 0, 10, 10)), StudyObject("b", 1, (10, 0, 20, 10))])
    over = Scene("over", "photo", None, [StudyObject("a", 0, (0, 0, 12, 10)), StudyObject("b", 1, (10, 0, 20, 10))])
    single = Scene("one", "photo", None, [StudyObject("a", 0, (0, 0, 12, 10))])
    from utils import study as S
    assert S.overlapping_boxes([apart, over, single]) == ["over"]
