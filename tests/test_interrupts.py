"""Interrupting a long loop (the kernel's ■ raises KeyboardInterrupt) stops it within one step:
image optimisations return the best result so far, the other loops re-raise. Either way the
model is left as found, with no hook, and running the cell again gives a normal result."""
import copy
from contextlib import contextmanager

import pytest
import torch

from test_model_untouched import assert_same, snapshot
from test_reproducible import same_up_to_rounding
from utils import (attribution, cam, class_model, deepdream, evaluation, features, fooling,
                   inversion, occlusion, patches, style)
from utils.images import load_image


@contextmanager
def interrupt_at(model, k):
    """Raise KeyboardInterrupt in the k-th forward pass of ``model`` (a network or one of its
    layers); count the passes after."""
    count = {"calls": 0, "after": 0}

    def hook(module, inputs):
        count["calls"] += 1
        if count["calls"] == k:
            raise KeyboardInterrupt
        if count["calls"] > k:
            count["after"] += 1
    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


# name: call(model, x), each a loop of several forward passes; the result must be comparable
RETURN_SO_FAR = {
    "deepdream": lambda m, x: deepdream.deepdream(m, x, "blocks.4", steps=3, octaves=3,
                                                  progress=False),
    "synthesise_texture": lambda m, x: style.synthesise_texture(m, x, ["stem"], steps=6,
                                                                progress=False).image,
    "transfer_style": lambda m, x: style.transfer_style(m, x, x.flip(-1), steps=6,
                                                        content_at="blocks.2", style_at=["stem"],
                                                        progress=False).image,
    "invert": lambda m, x: inversion.invert(m, x, "blocks.4", steps=6, lambda_tv=1.0,
                                            progress=False).images,
    "class_model": lambda m, x: class_model.class_model(m, 1, size=32, steps=6, progress=False),
    "fool": lambda m, x: fooling.fool(m, x, 1, max_steps=6, progress=False)[0],
}
RE_RAISE = {
    "occlusion": lambda m, x: occlusion.occlusion(m, x, size=16, stride=16, batch_size=2,
                                                  progress=False)["prob"],
    "score_cam": lambda m, x: cam.score_cam(m, x, 285, channels=8, batch_size=2, progress=False),
    "smoothgrad": lambda m, x: attribution.smoothgrad(m, x, 285, samples=6, batch_size=2,
                                                      progress=False),
    "integrated_gradients": lambda m, x: attribution.integrated_gradients(
        m, x, 285, steps=6, batch_size=2, progress=False),
    "deletion_insertion": lambda m, x: torch.tensor(evaluation.deletion_insertion(
        m, x, torch.arange(64 * 64.0).view(64, 64), 285, pixels_per_step=64 * 8, batch_size=2,
        progress=False)[0]),
    "build_feature_bank": lambda m, x: torch.from_numpy(bank(m).codes),
    "embed": lambda m, x: features.embed(m, [load_image(n).resize((64, 64))
                                             for n in ("cat", "coffee", "rocket")], batch_size=1),
}


# the forward pass that is interrupted: one inside the loop, after the preparations
INTERRUPT_AT = {"transfer_style": 4, "occlusion": 3}
# the layer whose passes are counted instead of the model's: incremental occlusion runs the
# network layer by layer (utils.incremental), never the model's own forward
COUNTED = {"occlusion": "fc"}


def bank(model):
    patches._BANKS.clear()
    regions = patches.propose_regions([("cat", load_image("cat").resize((96, 72)))], per_photo=6)
    return patches.build_feature_bank(model, regions, ["blocks.4"], size=64, batch_size=2,
                                      progress=False)


@pytest.fixture(scope="module")
def model(lite):
    return copy.deepcopy(lite)


@pytest.fixture(scope="module")
def x(model):
    return model.spec.preprocess("cat", size=64)


@pytest.mark.parametrize("name", list(RETURN_SO_FAR) + list(RE_RAISE))
def test_an_interrupt_stops_within_one_step_and_leaves_the_model_as_found(model, x, name,
                                                                         capsys):
    call = RETURN_SO_FAR.get(name) or RE_RAISE[name]
    clean = call(model, x)
    before = snapshot(model)
    k = INTERRUPT_AT.get(name, 2)
    counted = model.get_submodule(COUNTED[name]) if name in COUNTED else model
    with interrupt_at(counted, k) as count:
        if name in RE_RAISE:
            with pytest.raises(KeyboardInterrupt):
                call(model, x)
        else:
            try:
                partial = call(model, x)
            except KeyboardInterrupt:
                pytest.fail("the interrupt escaped instead of returning the result so far")
            assert partial.shape == clean.shape and torch.isfinite(partial).all()
    assert count["calls"] >= k, "the interrupt was never raised"
    # at most the scoring of the image so far (L-BFGS's line search: one more)
    assert count["after"] <= (2 if name in RETURN_SO_FAR else 0), count
    assert_same(before, snapshot(model))
    assert same_up_to_rounding(call(model, x), clean)           # a re-run is a normal run


def test_an_interrupted_dream_keeps_the_detail_so_far(model, x, capsys):
    with interrupt_at(model, 3):                                # in the first octave
        dream = deepdream.deepdream(model, x, "blocks.4", steps=4, octaves=3, progress=False)
    change = (dream - x).abs().mean()
    assert 0 < change < (deepdream.deepdream(model, x, "blocks.4", steps=4, octaves=3,
                                             progress=False) - x).abs().mean()
