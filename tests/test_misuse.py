"""Every misuse gets a project error that says what was wrong and what to pass, before any
forward pass, instead of a raw error from deep inside torch: a batch of the wrong kind (an
integer tensor, one image without its batch axis, not a tensor at all), a layer that does not
exist, a channel a layer does not have, a box of the wrong shape."""
import numpy as np
import pytest
import torch
from torch import nn

from utils import (attribution, cam, class_model, deconvnet, deepdream, evaluation, features,
                   fixations, fooling, hooks, inversion, models, occlusion, patches,
                   receptive_field, style, upconv)
from utils.hooks import ChannelError, count_hooks
from utils.images import ImageError, load_image
from utils.localize import BoxError, check_boxes


def rgb(m, x):
    """RGB in [0, 1] for a good batch; a bad one is passed on as it is."""
    good = torch.is_tensor(x) and x.is_floating_point() and x.dim() == 4 and x.shape[1] == 3
    return m.spec.denormalize(x).clamp(0, 1) if good else x


# name: call(model, x) for every public function that takes an image batch x
TAKES_A_BATCH = {
    "attribution.input_gradient": lambda m, x: attribution.input_gradient(m, x),
    "attribution.saliency": lambda m, x: attribution.saliency(m, x),
    "attribution.guided_backprop": lambda m, x: attribution.guided_backprop(m, x),
    "attribution.smoothgrad": lambda m, x: attribution.smoothgrad(m, x, samples=2, progress=False),
    "attribution.integrated_gradients": lambda m, x: attribution.integrated_gradients(
        m, x, steps=2, progress=False),
    "attribution.completeness": lambda m, x: attribution.completeness(m, x, 1, x),
    "attribution.count_functional_relus": lambda m, x: attribution.count_functional_relus(m, x),
    "cam.cam": lambda m, x: cam.cam(m, x),
    "cam.grad_cam": lambda m, x: cam.grad_cam(m, x),
    "cam.guided_grad_cam": lambda m, x: cam.guided_grad_cam(m, x),
    "cam.score_cam": lambda m, x: cam.score_cam(m, x, progress=False),
    "cam.class_gradients": lambda m, x: cam.class_gradients(m, x, "head"),
    "cam.CamExplorer": lambda m, x: cam.CamExplorer(m, x, ["head"], top=2),
    "occlusion.occlusion": lambda m, x: occlusion.occlusion(m, x, progress=False),
    "fooling.fool": lambda m, x: fooling.fool(m, x, 1, progress=False),
    "class_model.class_model(init)": lambda m, x: class_model.class_model(m, 1, init=x, steps=1,
                                                                          progress=False),
    "evaluation.deletion_insertion": lambda m, x: evaluation.deletion_insertion(
        m, x, np.zeros((64, 64)), progress=False),
    "evaluation.explanation_map": lambda m, x: evaluation.explanation_map("gradient", m, x),
    "deconvnet.project_with_rule": lambda m, x: deconvnet.project_with_rule(m, x, "head", 0),
    "deconvnet.top_activations": lambda m, x: deconvnet.top_activations(m, x, "head", [0]),
    "deconvnet.ChannelProjector": lambda m, x: deconvnet.ChannelProjector(m, x, "head")(0),
    "attribution.class_saliencies": lambda m, x: attribution.class_saliencies(m, x, [1, 2]),
    "features.stage_activations": lambda m, x: features.stage_activations(m, x),
    "deepdream.deepdream": lambda m, x: deepdream.deepdream(m, x, steps=1, progress=False),
    "deepdream.activation_norm": lambda m, x: deepdream.activation_norm(m, x, "dream"),
    "style.synthesise_texture": lambda m, x: style.synthesise_texture(m, x, steps=1,
                                                                      progress=False),
    "style.transfer_style": lambda m, x: style.transfer_style(m, x, x, steps=1, progress=False),
    "inversion.invert": lambda m, x: inversion.invert(m, x, "head", steps=1, progress=False),
    "upconv.encode": lambda m, x: upconv.encode(m, rgb(m, x)),
    "upconv.reconstruct": lambda m, x: upconv.reconstruct(upconv.load_decoder(), m, x),
    "fixations.record_forward": lambda m, x: fixations.record_forward(m, x),
    "fixations.backtrack": lambda m, x: fixations.backtrack(m, x),
    "models.top_k": lambda m, x: models.top_k(m, x),
    "style.features": lambda m, x: style.features(m, x, ["stem"]),
    "style.source_grams": lambda m, x: style.source_grams(m, x, ["stem"]),
}
# what is wrong with the batch -> the words the error must say
BAD_BATCHES = {
    "integer tensor": (lambda x: (x * 100).long(), "float tensor"),
    "3-D tensor": (lambda x: x[0], "one image of shape"),
    "not a tensor": (lambda x: x[0].permute(1, 2, 0).numpy(), "got a ndarray"),
    "list of tensors": (lambda x: [x], "got a list"),
    "wrong channels": (lambda x: x[:, :2], "N×3×H×W"),
}


@pytest.fixture(scope="module")
def x(lite):
    return lite.spec.preprocess("cat", size=64)


@pytest.fixture
def no_forward_pass(lite):
    """Fails the test if ``lite`` ran a forward pass (the error must come first)."""
    calls = []
    handle = lite.register_forward_pre_hook(lambda *_: calls.append(1))
    yield
    handle.remove()
    assert calls == [], "the error came after a forward pass"
    assert count_hooks(lite) == 0


@pytest.mark.parametrize("bad", list(BAD_BATCHES))
@pytest.mark.parametrize("name", list(TAKES_A_BATCH))
def test_a_bad_batch_gets_an_image_error_before_any_work(lite, x, name, bad, no_forward_pass):
    if name == "models.top_k" and bad == "3-D tensor":
        pytest.skip("top_k takes one image with or without its batch axis")
    make, message = BAD_BATCHES[bad]
    with pytest.raises(ImageError, match=message):
        TAKES_A_BATCH[name](lite, make(x))


@pytest.mark.parametrize("case", ["under no_grad", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("name", list(TAKES_A_BATCH))
def test_no_grad_and_other_precisions_give_a_result(lite, x, name, case):
    """A gradient method called inside ``torch.no_grad()`` still gets its gradients, and a
    batch in another float precision is converted to the model's: a result, never a raw
    error from autograd or a convolution."""
    if case == "under no_grad":
        with torch.no_grad():
            TAKES_A_BATCH[name](lite, x)
    else:
        TAKES_A_BATCH[name](lite, x.to(getattr(torch, case)))


def test_building_blocks_take_awkward_inputs_too(lite):
    with torch.no_grad():                                       # the footprint is a gradient
        assert receptive_field.gradient_footprint(lite, "blocks.4", 0, 1, 1, input_size=64).sum() > 0
    half = torch.rand(3, 32, 32).bfloat16()                     # NumPy has no bfloat16
    assert load_image(half).size == (32, 32)
    one = torch.rand(4, 5, 6)                                   # one image's features, C×H×W
    assert torch.allclose(style.gram_matrix(one), style.gram_matrix(one[None])[0])
    with pytest.raises(ValueError, match="N×C×H×W"):
        style.gram_matrix(torch.rand(4, 5))


def test_lists_and_regions_are_checked_too(lite, x, no_forward_pass):
    with pytest.raises(ImageError, match="list of images"):
        features.embed(lite, x)
    with pytest.raises(TypeError, match="propose_regions"):
        patches.build_feature_bank(lite, [("cat", load_image("cat"))], ["head"])
    with pytest.raises(ImageError, match="one image"):                  # a batch of two
        fixations.backtrack(lite, x.repeat(2, 1, 1, 1))


# name: call(model, x, layer) that must refuse a layer that does not exist, before any work
TAKES_A_LAYER = {
    "hooks.layer_outputs": lambda m, x, layer: hooks.layer_outputs(m, x, [layer]),
    "cam.cam": lambda m, x, layer: cam.cam(m, x, layer=layer),
    "cam.grad_cam": lambda m, x, layer: cam.grad_cam(m, x, layer=layer),
    "cam.score_cam": lambda m, x, layer: cam.score_cam(m, x, layer=layer, progress=False),
    "occlusion.occlusion": lambda m, x, layer: occlusion.occlusion(m, x, layer=layer, progress=False),
    "deconvnet.project_with_rule": lambda m, x, layer: deconvnet.project_with_rule(m, x, layer, 0),
    "deconvnet.top_activations": lambda m, x, layer: deconvnet.top_activations(m, x, layer, [0]),
    "deepdream.deepdream": lambda m, x, layer: deepdream.deepdream(m, x, layer, progress=False),
    "inversion.invert": lambda m, x, layer: inversion.invert(m, x, layer, steps=1, progress=False),
    "inversion.default_tv_lambda": lambda m, x, layer: inversion.default_tv_lambda(m, layer),
    "style.synthesise_texture": lambda m, x, layer: style.synthesise_texture(m, x, [layer], steps=1,
                                                                         progress=False),
    "style.transfer_style(content_at)": lambda m, x, layer: style.transfer_style(
        m, x, x, steps=1, content_at=layer, progress=False),
    "style.transfer_style(style_at)": lambda m, x, layer: style.transfer_style(
        m, x, x, steps=1, style_at=["stem", layer], progress=False),
    "receptive_field.receptive_field": lambda m, x, layer: receptive_field.receptive_field(m, layer),
    "receptive_field.gradient_footprint": lambda m, x, layer: receptive_field.gradient_footprint(
        m, layer, 0, 0, 0, input_size=64),
    "upconv.encode": lambda m, x, layer: upconv.encode(m, rgb(m, x), layer=layer),
    "patches.build_feature_bank": lambda m, x, layer: patches.build_feature_bank(
        m, patches.propose_regions([("cat", load_image("cat"))], per_photo=1), layer),
}


@pytest.mark.parametrize("name", list(TAKES_A_LAYER))
def test_a_layer_that_does_not_exist_is_named_with_suggestions(lite, x, name, no_forward_pass):
    with pytest.raises(KeyError, match=r"No layer 'blocks\.99'.*Did you mean"):
        TAKES_A_LAYER[name](lite, x, "blocks.99")


class TinyZF(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x):
        return self.features(x)


# name: call(model, x) with a channel (or unit) that the layer does not have
BAD_CHANNELS = {
    "occlusion: too large": lambda m, x: occlusion.occlusion(m, x, layer="head", channel=1280,
                                                             progress=False),
    "occlusion: negative": lambda m, x: occlusion.occlusion(m, x, layer="head", channel=-1,
                                                            progress=False),
    "occlusion: not an int": lambda m, x: occlusion.occlusion(m, x, layer="head", channel=2.5,
                                                              progress=False),
    "occlusion: wrong count": lambda m, x: occlusion.occlusion(m, x, layer="head", channel=[1, 2],
                                                               progress=False),
    "deconvnet.project_with_rule": lambda m, x: deconvnet.project_with_rule(m, x, "head", 1280),
    "deconvnet.project_with_rule: position": lambda m, x: deconvnet.project_with_rule(
        m, x, "head", 0, position=(5, 0)),
    "deconvnet.top_activations": lambda m, x: deconvnet.top_activations(m, x, "head", [0, 5000]),
    "deconvnet.project_with_switches": lambda m, x: deconvnet.project_with_switches(
        TinyZF(), x, "features.2", 4),
    "receptive_field.gradient_footprint": lambda m, x: receptive_field.gradient_footprint(
        m, "head", 1280, 0, 0, input_size=64),
    "receptive_field.gradient_footprint: position": lambda m, x: receptive_field.gradient_footprint(
        m, "head", 0, 2, 9, input_size=64),
}


@pytest.mark.parametrize("name", list(BAD_CHANNELS))
def test_a_channel_the_layer_lacks_gets_a_channel_error(lite, x, name):
    with pytest.raises(ChannelError, match=r"has no channel|Give one channel|is outside"):
        BAD_CHANNELS[name](lite, x)
    assert count_hooks(lite) == 0


def test_occlusion_refuses_a_channel_without_a_layer(lite, x, no_forward_pass):
    with pytest.raises(ValueError, match="pass layer= too"):
        occlusion.occlusion(lite, x, channel=3, progress=False)


@pytest.mark.parametrize("boxes", [[(1, 2, 3)], [(10, 10, 5, 50)], [(0, 10, 5, 5)], "box", [],
                                   [(0, 0, 5, 5), (1, 2)], [(0, 0, float("nan"), 5)], None])
def test_a_box_of_the_wrong_shape_gets_a_box_error(boxes):
    saliency = np.zeros((20, 20))
    with pytest.raises(BoxError, match=r"4 numbers \(x0, y0, x1, y1\) with x0 < x1"):
        evaluation.pointing_hit(saliency, boxes)


def test_one_box_alone_is_taken_as_a_list_of_one():
    saliency = np.zeros((20, 20))
    saliency[5, 5] = 1
    assert evaluation.pointing_hit(saliency, (0, 0, 10, 10), tolerance=0)
    assert evaluation.pointing_hit(saliency, np.array([0, 0, 10, 10]), tolerance=0)
    assert not evaluation.pointing_hit(saliency, [(12, 12, 20, 20)], tolerance=0)
    assert check_boxes(torch.tensor([[1, 2, 3, 4]])) == [(1.0, 2.0, 3.0, 4.0)]
    with pytest.raises(ValueError, match="one H×W map"):
        evaluation.pointing_hit(saliency[None], [(0, 0, 10, 10)])
