"""The claims notebooks 09 (DeepDream) and 10 (feature inversion) check: each verdict function
says True where its claim holds and False on a counterfactual where it does not."""
import math

import pytest
import torch
from torch import nn

from utils import deepdream as dd
from utils import exercises as X
from utils import inversion as inv
from utils.models import ModelSpec


def box_image(spec, top, left, size=64, colour=(0.9, 0.6, 0.3)):
    """A normalised 1×3×size×size image: a coloured box on black with its corner at (top, left)."""
    rgb = torch.zeros(1, 3, size, size)
    rgb[..., top:top + 20, left:left + 16] = torch.tensor(colour).view(1, 3, 1, 1)
    return spec.normalize(rgb)


def wave(period, size=64, amplitude=1.0):
    t = torch.arange(size, dtype=torch.float32)
    return amplitude * torch.sin(2 * math.pi * t / period).view(1, 1, 1, -1).expand(1, 3, size, size)


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    model.spec = ModelSpec("tiny", "test", {"dream": "1"})
    return model.eval()


# --- notebook 10 --------------------------------------------------------------------------
def test_keeps_layout_beats_unrelated_photos_or_fails(lite):
    spec = lite.spec
    photo = box_image(spec, 8, 8)
    others = torch.cat([box_image(spec, 36, 40), box_image(spec, 40, 4), box_image(spec, 4, 40)])
    false_colours = box_image(spec, 8, 8, colour=(0.1, 0.8, 0.9))
    assert inv.keeps_layout(false_colours, photo, others, spec).all()          # same edges: kept
    elsewhere = box_image(spec, 36, 40)                                       # one of the others
    flat = spec.normalize(torch.full((1, 3, 64, 64), 0.5))                   # no edges at all
    assert not inv.keeps_layout(elsewhere, photo, others, spec).any()
    assert not inv.keeps_layout(flat, photo, others, spec).any()
    chance = inv.layout_chance(elsewhere, others, spec)                      # r with itself among the others
    assert torch.allclose(chance, torch.ones(1), atol=1e-5)


def test_falls_with_depth_needs_every_step_down():
    assert inv.falls_with_depth(torch.tensor([0.94, 0.82, 0.48, 0.33, -0.04]))
    assert not inv.falls_with_depth([0.94, 0.48, 0.82, 0.33, -0.04])           # one rise
    assert not inv.falls_with_depth([0.5, 0.5, 0.4])                            # a tie


def test_code_error_and_matches_code():
    model = tiny_model()
    photo, other = torch.rand(1, 3, 16, 16), torch.rand(2, 3, 16, 16)
    near = photo + 0.01 * torch.randn(1, 3, 16, 16)
    assert float(inv.code_error(model, photo, photo, "1")) == 0.0
    others = inv.code_error(model, other, photo, "1")
    assert inv.matches_code(inv.code_error(model, near, photo, "1"), others)
    assert not inv.matches_code(inv.code_error(model, other[:1], photo, "1"), others[1:].tolist() + [1e9])
    assert not inv.matches_code(others[0], others)                               # a tie is no match


def test_relative_code_error_is_the_root_of_the_data_term():
    assert torch.allclose(inv.relative_code_error([0.02, 0.05]), torch.tensor([0.1414, 0.2236], dtype=torch.float64),
                          atol=1e-4)
    assert not torch.allclose(inv.relative_code_error(0.05), torch.tensor(0.05, dtype=torch.float64))


def test_beats_on_every_photo():
    assert inv.beats_on_every_photo(torch.tensor([23.9, 18.5]), torch.tensor([16.4, 10.4]))
    assert not inv.beats_on_every_photo(torch.tensor([23.9, 9.0]), torch.tensor([16.4, 10.4]))
    assert not inv.beats_on_every_photo(torch.tensor([16.4]), torch.tensor([16.4]))


def test_concentrated_jumps_sees_spikes_and_edges_not_blur(lite):
    spec = lite.spec
    torch.manual_seed(0)
    smooth = 0.5 + 0.1 * torch.linspace(0, 1, 64).view(1, 1, 1, -1).expand(1, 3, 64, 64)
    spiky = smooth.clone()
    spiky[..., torch.randint(0, 64, (12,)), torch.randint(0, 64, (12,))] = 1.0
    blurred = torch.nn.functional.avg_pool2d(spiky, 5, stride=1, padding=2, count_include_pad=False)
    noisy = (smooth + 0.05 * torch.randn(1, 3, 64, 64)).clamp(0, 1)
    a, b, c = spec.normalize(spiky), spec.normalize(blurred), spec.normalize(noisy)
    assert inv.concentrates_jumps(a, b, spec).all() and inv.concentrates_jumps(a, c, spec).all()
    assert not inv.concentrates_jumps(b, a, spec).any()                        # the wrong panel
    assert not inv.concentrates_jumps(c, a, spec).any()                        # even noise
    assert float(inv.top_jump_share(c, spec)) < 0.05                           # near an even 1 %


# --- notebook 09 --------------------------------------------------------------------------
def test_softer_detail_compares_frequency_content():
    assert dd.softer_detail(wave(32), wave(4)).all()
    assert not dd.softer_detail(wave(4), wave(32)).any()                        # the wrong way round
    assert not dd.softer_detail(wave(16), wave(16, amplitude=3)).any()          # only stronger
    assert not dd.softer_detail(wave(8) + wave(4), wave(8)).any()               # finer strokes added


def test_closer_to_guide_prefers_the_guided_features():
    colour = nn.Conv2d(3, 3, 1, bias=False)                                   # features = the pixel's colour
    with torch.no_grad():
        colour.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = nn.Sequential(colour).eval()
    model.spec = ModelSpec("colour", "test", {"dream": "0"})
    guide = torch.zeros(1, 3, 8, 8)
    guide[:, 0, :, :4], guide[:, 1, :, 4:] = 1.0, 1.0                        # red and green halves
    guided = torch.zeros(1, 3, 8, 8)
    guided[:, 0], guided[:, 2] = 1.0, 0.2                                     # red, a little blue
    free = torch.zeros(1, 3, 8, 8)
    free[:, 2], free[:, 0] = 1.0, 0.2                                         # blue, a little red
    assert dd.closer_to_guide(model, guided, free, guide, "0").all()
    assert not dd.closer_to_guide(model, free, guided, guide, "0").any()      # the wrong panel
    assert not dd.closer_to_guide(model, 3 * guided, guided, guide, "0").any()  # only a larger norm


# --- the exercises' checks catch the plausible mistakes -------------------------------------
def _cat(u, dim):
    return torch.cat([u.narrow(dim, 1, u.shape[dim] - 1), u.narrow(dim, u.shape[dim] - 1, 1)], dim=dim) - u


TV_MISTAKES = {
    "ignores β": lambda u, beta: inv.tv_beta(u, 2),
    "forgets the square root": lambda u, beta: (_cat(u, -1) ** 2 + _cat(u, -2) ** 2).pow(beta).flatten(1).sum(1),
    "|dx|^β + |dy|^β": lambda u, beta: (_cat(u, -1).abs().pow(beta) + _cat(u, -2).abs().pow(beta)).flatten(1).sum(1),
    "drops the border": lambda u, beta: ((u[..., :-1, 1:] - u[..., :-1, :-1]) ** 2
                                         + (u[..., 1:, :-1] - u[..., :-1, :-1]) ** 2).pow(beta / 2).flatten(1).sum(1),
    "adds channels first": lambda u, beta: (_cat(u, -1) ** 2 + _cat(u, -2) ** 2).sum(1).pow(beta / 2).flatten(1).sum(1),
    "averages": lambda u, beta: inv.tv_beta(u, beta) / u[0].numel(),
}


@pytest.mark.parametrize("mistake", list(TV_MISTAKES))
def test_tv_check_catches(mistake, capsys):
    assert X.check_tv_beta(inv.tv_beta)
    assert not X.check_tv_beta(TV_MISTAKES[mistake])
    assert capsys.readouterr().out.splitlines()[1].startswith("Not yet")


def test_dream_step_check_catches():
    assert X.check_dream_step(dd.normalized_step)
    assert not X.check_dream_step(lambda x, g, lr: x + lr * g / g.abs().flatten(1).mean(1).view(-1, 1, 1, 1))
    assert not X.check_dream_step(lambda x, g, lr: x - lr * g / g.abs().mean())
    assert not X.check_dream_step(lambda x, g, lr: x - lr * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1))


def test_short_answer_checks(capsys):
    assert X.check_step_units(0.0257) and X.check_step_units(1.5 / 255 / 0.229)   # rounded or not
    assert not X.check_step_units(1.5 / 255) and not X.check_step_units(0.0258)
    assert not X.check_step_units(0.0256)                                     # cut, not rounded
    assert X.check_first_octave(109) and not X.check_first_octave(82)
    assert X.check_sigma(9583) and X.check_sigma(9578) and X.check_sigma(9580)      # rounded along the way
    assert not X.check_sigma(37.6) and not X.check_sigma(9700)
    capsys.readouterr()
    assert not X.check_sigma(5532)                                           # H·W only: a hint
    assert "three channels" in capsys.readouterr().out
    assert not X.check_spike_cost(341.4)                                     # one number: a hint
    assert "pair" in capsys.readouterr().out
    assert X.check_spike_cost((341.4, 40000)) and X.check_spike_cost([341, 40000.0])
    assert not X.check_spike_cost((200, 40000)) and not X.check_spike_cost((341.4, 20000))
    assert not X.check_spike_cost((100, 10000))                               # one pixel's jump only
    assert not X.check_sigma(None)
    assert capsys.readouterr().out.splitlines()[-1] == X.NOT_ANSWERED
