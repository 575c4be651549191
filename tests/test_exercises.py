"""Every exercise check says right for the right answer and wrong for a wrong one (or None),
prints one verdict line and returns a bool."""
import pytest
import torch

from utils import exercises as X
from utils import features
from utils.fixations import record_forward
from utils.style import gram_matrix


def verdicts(capsys, check, right, wrong):
    results = [check(right), check(wrong), check(None)]
    lines = capsys.readouterr().out.splitlines()
    assert results == [True, False, False]
    assert len(lines) == 3 and lines[0].startswith("Right") and not lines[1].startswith("Right")
    return lines


def test_first_conv_parameters(lite, capsys):
    verdicts(capsys, lambda a: X.check_first_conv_parameters(lite, a), 32 * 3 * 3 * 3, 7)


def test_strongest_channel(lite, capsys):
    acts = features.stage_activations(lite, lite.spec.preprocess("cat", size=128))
    last = lite.spec.layer("stages")[-1]
    best = int(acts[last][0].mean(dim=(1, 2)).argmax())
    verdicts(capsys, lambda a: X.check_strongest_channel(acts, last, a), best, best + 1)


def test_alpha_and_box(capsys):
    grads = torch.randn(4, 3, 3)
    verdicts(capsys, lambda a: X.check_alpha(a, grads), grads.mean(dim=(1, 2)), grads.sum(dim=(1, 2)))
    heatmap = torch.zeros(6, 6)
    heatmap[1:3, 1:4] = 1
    verdicts(capsys, lambda a: X.check_box(a, heatmap, 0.15), (1, 1, 4, 3), (0, 0, 6, 6))


def test_positive_contributors(lite, capsys):
    x = lite.spec.preprocess("cat", size=128)
    gm, values = record_forward(lite, x)
    layer = lite.spec.layer("classifier")
    fc = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer)
    a = values[fc.all_input_nodes[0]][0]
    right = int(((a * lite.get_submodule(layer).weight[285]) > 0).sum())
    verdicts(capsys, lambda n: X.check_positive_contributors(lite, x, 285, n), right, right + 1)


def test_gram_checks(capsys):
    verdicts(capsys, lambda a: X.check_gram_entries(64, a), 64 * 65 // 2, 64 * 64)
    right = gram_matrix(X.EXERCISE_FEATURES)[0]
    verdicts(capsys, X.check_gram_by_hand, right.tolist(), (right * 2).tolist())


@pytest.mark.parametrize("answer", [None, [1.0], torch.zeros(5)])
def test_same_numbers_refuses_missing_or_misshapen_answers(answer):
    assert not X.same_numbers(answer, torch.ones(2, 2))
