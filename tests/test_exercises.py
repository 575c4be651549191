"""Every exercise check says right for the right answer and wrong for a wrong one (or None),
prints one verdict line and returns a bool."""
import pytest
import torch

from utils import attribution, cam, deepdream, evaluation, features, inversion, localize, occlusion, style
from utils import exercises as X
from utils.fixations import conv_rule, record_forward
from utils.style import gram_matrix


def verdicts(capsys, check, right, wrong):
    results = [check(right), check(wrong), check(None)]
    lines = capsys.readouterr().out.splitlines()
    assert results == [True, False, False]
    assert len(lines) == 3 and lines[0].startswith("Right") and lines[1].startswith("Not")
    assert lines[2] == X.NOT_ANSWERED
    return lines


def test_first_conv_parameters(lite, capsys):
    verdicts(capsys, lambda a: X.check_first_conv_parameters(lite, a), 32 * 3 * 3 * 3, 7)


def test_strongest_channel(lite, capsys):
    acts = features.stage_activations(lite, lite.spec.preprocess("cat", size=128))
    last = lite.spec.layer("stages")[-1]
    best = int(acts[last][0].mean(dim=(1, 2)).argmax())
    verdicts(capsys, lambda a: X.check_strongest_channel(acts, last, a), best, best + 1)


def test_receptive_field_checks(capsys):
    verdicts(capsys, X.check_vgg_conv4_3, 92, 196)          # 92 px; 196 would be conv5_3
    from utils.receptive_field import Axis, ReceptiveField
    field = ReceptiveField("head", Axis(851, 32, 31), Axis(851, 32, 31), (7, 7), 224)
    verdicts(capsys, lambda a: X.check_jump(field, a), 32, 16)
    verdicts(capsys, X.check_vgg_pool5_jump, 32, 10)        # 10 adds the five strides


def test_nms_dropped_check(capsys):
    from utils import patches as P
    boxes = [(0, 0, 10, 10), (2, 0, 12, 10), (20, 0, 30, 10), (40, 0, 50, 10)]
    scores = [4.0, 3.0, 2.0, 1.0]
    bank = type("Bank", (), {"top_regions": lambda self, layer, channel, k, iou: [
        P.Hit(int(i), scores[i], boxes[i]) for i in P.nms(boxes, scores, iou, k=k)]})()
    # IoU of the first two boxes is 8/12: kept at 0.7, dropped at 0.1; k=3
    check = lambda a: X.check_nms_dropped(bank, "l", 0, a, k=3, iou=0.7, strict=0.1)  # noqa: E731
    verdicts(capsys, check, 1, 2)


def test_alpha_and_box(capsys):
    grads = torch.randn(4, 3, 3)                  # varies over the positions, as at an early layer
    for wrong in (grads.sum(dim=(1, 2)), grads[:, 0, 0], grads.amax(dim=(1, 2)),
                  grads.flatten(1).median(dim=1).values):
        verdicts(capsys, lambda a: X.check_alpha(a, grads), grads.mean(dim=(1, 2)), wrong)
    heatmap = X.box_exercise_map()
    right = (1, 1, 9, 5)                          # the staircase, 8-connected
    for wrong in [(1, 6, 3, 8),                   # side neighbours only: the 2×2 block
                  (1, 1, 9, 8),                   # every region
                  (1, 1, 5, 9),                   # x and y swapped
                  (1, 1, 8, 4),                   # x1, y1 on the last pixel
                  (0, 0, 10, 8)]:                 # normalised first, or 0.15 without the max
        lines = verdicts(capsys, lambda a: X.check_box(a, heatmap, 0.15), right, wrong)
        assert not lines[1].startswith("Not yet: Threshold")      # the hint names the slip


def test_positive_contributors(lite, capsys):
    x = lite.spec.preprocess("cat", size=128)
    gm, values = record_forward(lite, x)
    layer = lite.spec.layer("classifier")
    fc = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer)
    a = values[fc.all_input_nodes[0]][0]
    right = int(((a * lite.get_submodule(layer).weight[285]) > 0).sum())
    verdicts(capsys, lambda n: X.check_positive_contributors(lite, x, 285, n), right, right + 1)
    weight = lite.get_submodule(layer).weight[285]
    for slip, words in [(int((weight > 0).sum()), "positive weights"), (int((a > 0).sum()), "inputs that fire")]:
        X.check_positive_contributors(lite, x, 285, slip)
        assert words in capsys.readouterr().out


def test_inversion_short_answers(capsys):
    verdicts(capsys, X.check_sigma, 9580, 5532)                 # 5532: H·W without the channels
    verdicts(capsys, X.check_spike_cost, (341, 40000), 341)      # one number: a hint, no TypeError


def test_gram_checks(capsys):
    verdicts(capsys, lambda a: X.check_gram_entries(64, a), 64 * 65 // 2, 64 * 64)
    right = gram_matrix(X.EXERCISE_FEATURES)[0]
    verdicts(capsys, X.check_gram_by_hand, right.tolist(), (right * 2).tolist())


def test_unpool_by_hand(capsys):
    right = [[0, 0, 0, 2], [5, 0, 0, 0], [0, 0, 3, 0], [0, 7, 0, 0]]
    verdicts(capsys, X.check_unpool, right, torch.tensor(right).t().tolist())    # columns first
    corners = [[5, 0, 2, 0], [0, 0, 0, 0], [7, 0, 3, 0], [0, 0, 0, 0]]           # window corners
    assert not X.check_unpool(corners) and not X.check_unpool([1, 2, 3])


def test_occlusion_grid(capsys):
    verdicts(capsys, lambda a: X.check_occlusion_grid(*a) if a else X.check_occlusion_grid(None, None),
             (64, 16), (49, 16))                                  # 49: the square at 0 forgotten
    for slip in [(8, 16), (81, 16), (64, 56), (64, 0)]:          # one axis; 224/24; no size; none
        assert not X.check_occlusion_grid(*slip)


@pytest.mark.parametrize("answer", [None, [1.0], torch.zeros(5)])
def test_same_numbers_refuses_missing_or_misshapen_answers(answer):
    assert not X.same_numbers(answer, torch.ones(2, 2))


# --- implement the core: each check accepts the reference and refuses a plausible mistake --
def stub(*args):
    raise NotImplementedError


CORE = {
    "filter_response": (X.check_filter_response, features.filter_response,
                        lambda x, w, stride: features.filter_response(x, w.flip(-1, -2), stride)),
    "box_iou": (X.check_box_iou, localize.box_iou,
                lambda a, b: localize.box_iou(a, b) * 2 if localize.box_iou(a, b) else 0.0),
    "occluded_copies": (X.check_occluded_copies, occlusion.occluded_copies,
                        lambda image, tops, lefts, size: image.repeat(len(tops), 1, 1, 1)),
    "grad_cam_map": (X.check_grad_cam_map, cam.grad_cam_map,
                     lambda a, g: cam.grad_cam_map(a, g, relu=False)),
    "conv_rule": (X.check_conv_rule,
                  lambda a, w, y, x, p: min(conv_rule({(0, y, x)}, a, w[None], (1, 1), (1, 1), 1, p)),
                  lambda a, w, y, x, p: min(conv_rule({(0, y, x)}, a, w[None], (1, 1), (1, 1), 1))),
    "gram_matrix": (X.check_gram_matrix, gram_matrix,
                    lambda f: f.flatten(2) @ f.flatten(2).transpose(1, 2)),
    "content_loss": (X.check_content_loss, style.content_loss, lambda f, p: ((f - p) ** 2).sum()),
    "dream_step": (X.check_dream_step, deepdream.normalized_step,
                   lambda x, g, lr: x - lr * g / g.abs().mean()),
    "tv_beta": (X.check_tv_beta, inversion.tv_beta,
                lambda u, beta: (u[..., :, 1:] - u[..., :, :-1]).pow(2).flatten(1).sum(1)),
    "auc": (X.check_auc, evaluation.auc, lambda curve: sum(curve) / len(curve)),
}


@pytest.mark.parametrize("name", list(CORE))
def test_core_checks_accept_the_reference_and_refuse_a_mistake(name, capsys):
    check, reference, wrong = CORE[name]
    assert check(reference) == True   # noqa: E712 (a Verdict, compared as a bool)
    assert check(wrong) == False      # noqa: E712
    assert check(stub) == False       # noqa: E712
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Right") and lines[1].startswith("Not yet")
    assert lines[2] == X.NOT_ANSWERED


def test_saliency_check_with_the_model(lite, capsys):
    x = lite.spec.preprocess("cat", size=64)
    assert X.check_saliency(attribution.saliency, lite, x, 285)
    assert not X.check_saliency(lambda m, x, t: attribution.input_gradient(m, x, t).amax(1), lite, x, 285)
    assert capsys.readouterr().out.splitlines()[1].startswith("Not yet")


def test_a_crashing_answer_gets_a_hint_not_a_traceback(capsys):
    assert not X.check_gram_matrix(lambda f: f @ f)
    assert "raised" in capsys.readouterr().out


def test_a_verdict_shows_nothing_but_its_line():
    """A cell that ends with a check shows the printed line and no bare True/False under it."""
    from IPython.core.formatters import DisplayFormatter
    result = X.verdict(False, "right", "hint", answered=False)
    assert not result and result == False   # noqa: E712
    assert DisplayFormatter().format(result) == ({}, {})
    assert X.verdict(True, "right", "hint")


def test_relu_rules_check_refuses_the_gradient_swapped_rules_and_a_masked_deconvnet(capsys):
    f, r = torch.tensor(X.RULE_INPUT), torch.tensor(X.RULE_SIGNAL)
    guided, deconv = [0.0, 0.0, 3.0, 0.5], [0.0, 2.0, 3.0, 0.5]      # worked out by hand
    assert X.check_relu_rules(guided, deconv)
    assert capsys.readouterr().out.splitlines() == ["guided: right", "deconvnet: right"]
    assert not X.check_relu_rules((f > 0) * r, deconv)                # the plain gradient
    assert not X.check_relu_rules(deconv, guided)                     # the rules swapped
    assert not X.check_relu_rules(guided, (f > 0) * r.clamp(min=0))   # a deconvnet with the mask
    capsys.readouterr()
    assert not X.check_relu_rules(None, None)
    assert capsys.readouterr().out.splitlines() == [X.NOT_ANSWERED]


def test_ig_steps_check_needs_the_relative_error_and_the_counts_that_pass(capsys):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 3)).eval()
    x, black = torch.randn(1, 3, 8, 8), torch.zeros(1, 3, 1, 1)
    e8, e256 = (X.completeness_error(net, x, 0, black, s) for s in (X.IG_CHECK_STEPS, 256))
    passing = sorted(s for s, e in {8: e8, 256: e256}.items() if e < 0.05)
    assert passing == [256]                 # this net's 8-step sum is off by more than 5 %

    def check(error_8, counts):
        return X.check_ig_steps(net, x, 0, black, error_8, counts, 256, e256)
    assert check(e8, passing)
    assert not check(100 * e8, passing)                                # a per cent, not a fraction
    assert not check(e8, [8, 256])                                     # a guess: both pass
    assert not check(e8, [])                                           # a guess: none passes
    capsys.readouterr()
    assert not check(None, None)
    assert capsys.readouterr().out.splitlines() == [X.NOT_ANSWERED]
