"""The localisation study (utils/study.py, data/study.json): the data, and each statistic on
maps whose answer is known (a map on the object, a flat map, the centre, the other class)."""
import math

import numpy as np
import pytest
import torch

from utils import evaluation as E
from utils import study as S
from utils.localize import box_iou, check_boxes

SIZE = 224


@pytest.fixture(scope="module")
def scenes():
    return S.load_study(SIZE)


@pytest.fixture(scope="module")
def pairs(scenes):
    return S.study_objects(scenes)


def on_object(box, size=SIZE):
    """A map that is a bump on the box (peak at its centre), near 0 elsewhere."""
    x0, y0, x1, y1 = box
    y, x = np.mgrid[0:size, 0:size]
    sigma = max(x1 - x0, y1 - y0) / 6
    return np.exp(-((x - (x0 + x1 - 1) / 2) ** 2 + (y - (y0 + y1 - 1) / 2) ** 2) / (2 * sigma ** 2))


def test_the_study_loads_with_enough_objects_of_every_kind(scenes, pairs):
    assert len(pairs) >= 30
    assert {s.kind for s in scenes} == set(S.KINDS)
    assert sum(s.kind == "composed" for s in scenes) >= 10
    two = [s for s in scenes if s.kind == "two objects" or len(s.objects) == 2]
    assert len(two) >= 6
    for scene in two:                                  # two classes, two places
        a, b = scene.objects
        assert a.index != b.index
        assert box_iou(a.box, b.box) < 0.1, scene.name    # the photo's two fruits touch


def test_every_box_lies_inside_its_scene(scenes):
    for scene in scenes:
        assert scene.image.size == (SIZE, SIZE)
        for obj in scene.objects:
            (x0, y0, x1, y1), = check_boxes(obj.box)
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE, (scene.name, obj.box)
            assert (x1 - x0) * (y1 - y0) >= 20 * 20, (scene.name, obj.box)     # big enough to see


def test_the_study_resizes_consistently():
    small = S.load_study(112)
    big = S.load_study(SIZE)
    for a, b in zip(S.study_objects(small), S.study_objects(big)):
        assert a[1].label == b[1].label
        assert all(abs(2 * u - v) <= 2 for u, v in zip(a[1].box, b[1].box))
    assert S.scaled_box((10, 10, 21, 21), (100, 100), (50, 50)) == (5, 5, 11, 11)   # never shrinks


def test_most_objects_are_off_centre(pairs):
    """The centre map (evaluation.centre_map) hits at most a quarter of the objects: the
    study can rank a method above it (a photo set framed around its objects could not)."""
    hits = S.pointing_hits([E.centre_map((SIZE, SIZE))] * len(pairs), pairs)
    assert sum(hits) <= len(pairs) / 4
    assert len(pairs) - sum(hits) >= 4 * E.discordant_needed()


def test_fewer_scenes_in_fast_mode_the_same_kinds():
    few = S.load_study(SIZE, every=3)
    assert {s.kind for s in few} == set(S.KINDS)
    assert len(few) < len(S.load_study(SIZE))


def test_the_bundled_model_recognises_every_object_in_its_scene(scenes):
    from utils.models import load_model
    model = load_model("efficientnet_lite0", "cpu")
    x = torch.cat([model.spec.preprocess(s.image) for s in scenes])
    with torch.no_grad():
        logits = model(x)
    for scene, row in zip(scenes, logits):
        top5 = row.topk(5).indices.tolist()
        for obj in scene.objects:
            assert obj.index in top5, (scene.name, obj.label)


def test_wilson_interval():
    low, high = S.wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.2775, abs_tol=1e-3)
    low, high = S.wilson_interval(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-3) and math.isclose(high, 0.7634, abs_tol=1e-3)
    low, high = S.wilson_interval(30, 35)
    assert low < 30 / 35 < high <= 1.0
    assert S.wilson_interval(0, 0) == (0.0, 1.0)


def test_pointing_and_share_reward_a_map_on_the_object_only(pairs):
    truth = [on_object(obj.box) for _, obj in pairs]
    flat = [np.ones((SIZE, SIZE))] * len(pairs)
    assert all(S.pointing_hits(truth, pairs))
    inside, area, beats = S.share_summary(S.shares(truth, pairs))
    assert inside > 2 * area and beats == len(pairs)
    inside, area, beats = S.share_summary(S.shares(flat, pairs))    # a flat map scores the area
    assert math.isclose(inside, area, rel_tol=1e-9) and beats == 0
    with pytest.raises(ValueError):
        S.pointing_hits(truth[:-1], pairs)


def test_class_discrimination_needs_each_class_on_its_own_object(pairs):
    truth = [on_object(obj.box) for _, obj in pairs]
    rows = S.discrimination(truth, pairs)
    assert len(rows) == len(S.two_object_scenes(pairs)) >= 6
    assert all(S.discriminates(r) and r[2] for r in rows)
    swapped = list(truth)                    # each class's map is the other class's map
    for i, j in S.two_object_scenes(pairs):
        swapped[i], swapped[j] = truth[j], truth[i]
    assert not any(S.discriminates(r) or r[2] for r in S.discrimination(swapped, pairs))
    same = list(truth)                       # one map for both classes: at most one can win
    for i, j in S.two_object_scenes(pairs):
        same[j] = truth[i]
    assert not any(S.discriminates(r) or r[2] for r in S.discrimination(same, pairs))
    flat = [np.ones((SIZE, SIZE))] * len(pairs)
    assert not any(S.discriminates(r) for r in S.discrimination(flat, pairs))


def test_method_table_ranks_a_map_on_the_object_above_the_baselines(pairs):
    maps = [{"truth": on_object(obj.box), "flat": np.ones((SIZE, SIZE)),
             "middle": E.centre_map((SIZE, SIZE))} for _, obj in pairs]
    table = S.method_table(maps, pairs, ["truth", "flat", "middle"], SIZE)
    assert set(table) == {"truth", "flat", "middle", "centre", "random"}
    truth = table["truth"]
    assert truth["beats centre"] and truth["above chance"]
    assert truth["pointing"][0] == len(pairs) and truth["discriminated"] == truth["scenes"]
    for name in ("flat", "middle", "centre", "random"):
        assert not table[name]["beats centre"], name
        assert table[name]["discriminated"] == 0 or name == "random", name
    assert not table["middle"]["above chance"] and not table["centre"]["above chance"]
    k, n, rate, (low, high) = table["centre"]["pointing"]
    assert low <= rate <= high and n == len(pairs)
    assert len(truth["passed"]) == truth["scenes"] and all(truth["passed"])
    assert "beats edges" not in truth                              # no edge map, no column


def test_the_edges_column_tests_each_row_against_the_edge_map(pairs):
    maps = [{"truth": on_object(obj.box), "edges": E.centre_map((SIZE, SIZE))} for _, obj in pairs]
    table = S.method_table(maps, pairs, ["truth", "edges"], SIZE)
    assert table["truth"]["beats edges"]
    assert not table["edges"]["beats edges"] and not table["random"]["beats edges"]


def test_only_the_fruits_photo_has_overlapping_boxes(scenes):
    assert [name.split(":")[0] for name in S.overlapping_boxes(scenes)] == ["fruits"]


def test_the_figures_are_readable_on_a_projector(scenes, pairs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.plotting import small_panels, unreadable_texts, use_lecture_style
    use_lecture_style()
    fig = S.show_scenes(scenes)
    assert small_panels(fig) == [] and unreadable_texts(fig) == []
    plt.close(fig)
    maps = [{"truth": on_object(obj.box), "flat": np.ones((SIZE, SIZE))} for _, obj in pairs]
    table = S.method_table(maps, pairs, ["truth", "flat"], SIZE)
    fig = S.show_ranking(table, ["truth", "flat"], S.chance_rates(pairs, SIZE))
    assert unreadable_texts(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "truth" and labels[-1] == "centre (baseline)"     # best at the top
    plt.close(fig)
