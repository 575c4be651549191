"""The verdicts printed by notebooks 03 and 04: each on a case where its claim holds (True)
and on a counterfactual where it must not (False). Tiny tensors and networks only."""
import torch
from torch import nn

from utils.deconvnet import project_with_rule, same_picture_on_every_image
from utils.evaluation import more_in_box, more_in_box_than_chance, pointing_hit
from utils.exercises import same_numbers
from utils.fooling import fooled_by_direction
from utils.occlusion import colour_matters, hiding_object_changes_label, label_change_rates

TOPS = LEFTS = [0, 4, 8]          # a 3×3 grid of 4 px squares on a 12×12 image
CENTRE = (4, 4, 8, 8)             # the box of the middle square


# ----------------------------------------------------------------------------- 03 occlusion
def test_hiding_the_object_changes_the_label_only_when_it_does():
    only_centre = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0]])          # label 1 there
    assert label_change_rates(only_centre, 0, TOPS, LEFTS, 4, CENTRE) == (1.0, 0.0)
    assert hiding_object_changes_label(only_centre, 0, TOPS, LEFTS, 4, CENTRE)
    everywhere = torch.ones(3, 3, dtype=torch.long)                        # equal rates
    assert not hiding_object_changes_label(everywhere, 0, TOPS, LEFTS, 4, CENTRE)
    only_outside = 1 - only_centre                                          # the other way
    assert not hiding_object_changes_label(only_outside, 0, TOPS, LEFTS, 4, CENTRE)


def test_lowest_probability_on_the_object_is_a_pointing_hit():
    drop = torch.zeros(12, 12)
    drop[5, 6] = 1.0                                   # p lowest with the square on the box
    assert pointing_hit(drop, CENTRE, tolerance=0)
    drop_elsewhere = torch.zeros(12, 12)
    drop_elsewhere[0, 11] = 1.0                        # the wrong place
    assert not pointing_hit(drop_elsewhere, CENTRE, tolerance=0)


def test_colour_matters_fails_for_the_mean_fill_and_for_the_same_fill_twice():
    p_mean = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    nearby = [p_mean + 0.01, p_mean - 0.02]            # an imperceptible change of fill
    assert colour_matters(p_mean - 0.2, p_mean, nearby)
    assert not colour_matters(p_mean, p_mean, nearby)          # the mean colour itself
    assert not colour_matters(nearby[1], p_mean, nearby)       # as small as a nearby fill
    assert not colour_matters(p_mean, p_mean, [p_mean])        # the same fill twice


# ----------------------------------------------------------------------------- 03 deconvnet
def _projections(net, layer, position, rule):
    images = torch.randn(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    return project_with_rule(net, images, layer, 0, position=position, rule=rule)[0]


def test_deconvnet_without_switches_is_the_same_picture_on_every_image():
    # the unit is taken after a ReLU: a positive activation (or 0, which projects nothing)
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 2, 3, padding=1), nn.ReLU()).eval()
    assert same_picture_on_every_image(_projections(plain, "3", (4, 4), "deconvnet"))
    assert not same_picture_on_every_image(_projections(plain, "3", (4, 4), "guided"))  # mask
    torch.manual_seed(1)
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(4, 2, 3, padding=1), nn.ReLU()).eval()
    assert not same_picture_on_every_image(_projections(pooled, "4", (2, 2), "deconvnet"))


def test_same_numbers_refuses_a_different_map():
    a = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert same_numbers(a * (1 + 1e-7), a)
    assert not same_numbers(a.flatten()[torch.randperm(a.numel())].view_as(a), a)
    assert not same_numbers(a.clamp(min=0), a)          # e.g. a guided map vs the gradient


# ----------------------------------------------------------------------------- 04 saliency
def test_share_in_box_beats_chance_only_for_a_map_on_the_box():
    on_box = torch.zeros(20, 20)
    on_box[5:10, 5:10] = torch.rand(5, 5) + 1
    box = (5, 5, 10, 10)
    assert more_in_box_than_chance(on_box + 0.01 * torch.rand(20, 20), box, top=0.05)
    assert not more_in_box_than_chance(torch.ones(20, 20), box, top=0.05)      # flat map
    off_box = torch.zeros(20, 20)
    off_box[12:17, 12:17] = 1.0
    assert not more_in_box_than_chance(off_box + 0.01 * torch.rand(20, 20), box, top=0.05)
    assert more_in_box(on_box, off_box, box)
    assert not more_in_box(off_box, on_box, box)
    assert not more_in_box(on_box, on_box, box)                     # the same map twice


# ----------------------------------------------------------------------------- 04 fooling
class Linear(nn.Module):
    """logit 1 = w·x + bias, logit 0 = 0: the class flips when w·x crosses −bias."""

    def __init__(self, bias):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1] = torch.randn(3 * 16 * 16, generator=torch.Generator().manual_seed(0))
            self.fc.bias.copy_(torch.tensor([0.0, bias]))

    def forward(self, x):
        return self.fc(x.flatten(1))


RANGE = (-torch.ones(1, 3, 1, 1), torch.ones(1, 3, 1, 1))


def test_fooled_by_direction_needs_the_target_and_a_random_change_that_keeps_the_label():
    x = torch.zeros(1, 3, 16, 16)
    w = Linear(0.0).fc.weight[1].view_as(x)
    eps = 0.01                                                  # of the pixel range (2 here)
    fooled = x + eps * 2 * w.sign()                             # moves w·x by 2ε‖w‖₁
    margin = eps * w.abs().sum().item()                         # half of that: it flips
    robust = Linear(-margin).eval()
    assert int(robust(fooled).argmax()) == 1 and int(robust(x).argmax()) == 0
    assert fooled_by_direction(robust, x, fooled, 1, valid_range=RANGE)
    assert not fooled_by_direction(robust, x, x, 1, valid_range=RANGE)             # not fooled
    fragile = Linear(-1e-4).eval()                              # random noise flips it too
    assert not fooled_by_direction(fragile, x, fooled, 1, valid_range=RANGE)


# ----------------------------------------------------------------------------- exercises
def test_occluded_copies_check_refuses_copies_that_share_the_image(capsys):
    from utils.exercises import check_occluded_copies

    def in_place(image, tops, lefts, size):        # zeroes the one image, once per square
        copies = []
        for top, left in zip(tops, lefts):
            image[:, top:top + size, left:left + size] = 0
            copies.append(image)
        return torch.stack(copies)

    def right(image, tops, lefts, size):
        copies = image.repeat(len(tops), 1, 1, 1)
        for k, (top, left) in enumerate(zip(tops, lefts)):
            copies[k, :, top:top + size, left:left + size] = 0
        return copies

    assert not check_occluded_copies(in_place)
    assert check_occluded_copies(right)


def test_same_numbers_takes_a_tensor_that_requires_grad_without_a_warning():
    import warnings
    a = torch.ones(3, requires_grad=True) * 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same_numbers(a, torch.ones(3)) and not same_numbers(a, torch.zeros(3))


# ----------------------------------------------------------------------------- 03, second pass
def test_the_deconvnet_changes_with_the_image_only_with_switches():
    from utils.deconvnet import changes_with_image
    torch.manual_seed(1)
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(4, 2, 3, padding=1), nn.ReLU()).eval()
    # the rule form routes through max-pool's switches: it equals the switch form (test_deconvnet)
    with_switches = _projections(pooled, "4", (2, 2), "deconvnet")
    assert changes_with_image(with_switches)
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 2, 3, padding=1), nn.ReLU()).eval()
    assert not changes_with_image(_projections(plain, "3", (4, 4), "deconvnet"))   # no switches
    assert changes_with_image(_projections(plain, "3", (4, 4), "guided"))          # forward mask
    assert not changes_with_image(with_switches[:1])                               # one image: no pair


def test_one_place_is_where_the_unit_is_positive_on_the_most_images():
    from utils.deconvnet import one_place
    acts = -torch.ones(4, 2, 3, 3)
    acts[[0, 2, 3], 1, 2, 1] = 1.0
    acts[[1], 1, 0, 0] = 1.0
    assert one_place(acts, 1) == ((2, 1), [0, 2, 3])


def test_edge_agreement_is_high_on_the_edge_and_chance_elsewhere():
    from utils.deconvnet import edge_agreement
    photo = torch.zeros(32, 32, 3)
    photo[:, 16:] = 1.0                                       # one vertical edge at x = 16
    on_edge = torch.zeros(3, 32, 32)
    on_edge[:, :, 14:18] = 1.0
    box = (0, 0, 32, 32)
    assert edge_agreement(on_edge, photo.numpy(), box) > 0.9
    off_edge = torch.zeros(3, 32, 32)
    off_edge[:, :, 0:4] = 1.0                                 # far from the edge
    assert edge_agreement(off_edge, photo.numpy(), box) < 0
    assert edge_agreement(torch.ones(3, 32, 32), photo.numpy(), box) == 0.0   # flat: no layout


def test_grid_extent_centres_each_cell_on_its_square():
    from utils.occlusion import grid_extent, positions
    tops = lefts = positions(224, 48, 16)
    left, right, bottom, top = grid_extent(tops, lefts, 48, 16)
    assert (left, top) == (24 - 8, 24 - 8) and (right, bottom) == (200 + 8, 200 + 8)
    cell = (right - left) / len(lefts)
    assert cell == 16 and left + cell * 2.5 == lefts[2] + 24       # cell 2's centre, square 2's centre


def test_show_heatmap_limits_share_one_scale():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from utils.plotting import show_heatmap
    fig, axes = plt.subplots(1, 2)
    for ax, top in zip(axes, (0.5, 0.8)):
        show_heatmap(torch.rand(8, 8, 3).numpy(), torch.linspace(0, top, 64).view(8, 8).numpy(), ax=ax,
                     limits=(0.0, 0.8), colorbar=False)
    assert [ax.images[-1].get_clim() for ax in axes] == [(0.0, 0.8), (0.0, 0.8)]
    show_heatmap(torch.rand(8, 8, 3).numpy(), torch.linspace(0, 0.5, 64).view(8, 8).numpy(), ax=axes[0],
                 colorbar=False)
    assert axes[0].images[-1].get_clim() == (0.0, 0.5)            # the default still stretches
    plt.close(fig)


def test_one_place_breaks_ties_towards_the_centre():
    from utils.deconvnet import one_place
    acts = torch.ones(2, 1, 5, 5)                     # positive everywhere on both images
    assert one_place(acts, 0) == ((2, 2), [0, 1])
