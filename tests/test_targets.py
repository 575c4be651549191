"""One ``target`` convention: every method that explains a class accepts None (top-1), an
int, a label, or one per image, and refuses a wrong one before any forward pass."""
import pytest
import torch

from utils import attribution, cam, class_model, evaluation, fixations, fooling, occlusion
from utils.targets import TargetError, check_target, class_index

CAT, CAT_LABEL = 285, "Egyptian cat"


def one_image(method):
    return method in ("backtrack", "deletion_insertion")


# name: call(model, x, target) with small settings, for a batch of two images
METHODS = {
    "input_gradient": lambda m, x, t: attribution.input_gradient(m, x, t),
    "saliency": lambda m, x, t: attribution.saliency(m, x, t),
    "guided_backprop": lambda m, x, t: attribution.guided_backprop(m, x, t),
    "smoothgrad": lambda m, x, t: attribution.smoothgrad(m, x, t, samples=2, progress=False),
    "integrated_gradients": lambda m, x, t: attribution.integrated_gradients(m, x, t, steps=2,
                                                                             progress=False),
    "cam": lambda m, x, t: cam.cam(m, x, t),
    "grad_cam": lambda m, x, t: cam.grad_cam(m, x, t),
    "guided_grad_cam": lambda m, x, t: cam.guided_grad_cam(m, x, t)[0],
    "score_cam": lambda m, x, t: cam.score_cam(m, x, t, channels=4, progress=False),
    "occlusion": lambda m, x, t: occlusion.occlusion(m, x, t, size=32, stride=32,
                                                     progress=False)["prob"],
    "fool": lambda m, x, t: fooling.fool(m, x, t, max_steps=1, progress=False)[0],
    "class_model": lambda m, x, t: class_model.class_model(
        m, t, size=32, steps=1, init=torch.zeros_like(x), progress=False),
    "backtrack": lambda m, x, t: fixations.backtrack(m, x, t),
    "deletion_insertion": lambda m, x, t: evaluation.deletion_insertion(
        m, x, torch.arange(64 * 64.0).view(64, 64), t, pixels_per_step=64 * 64 // 2, progress=False)[0],
}


@pytest.fixture(scope="module")
def batch(lite):
    return torch.cat([lite.spec.preprocess(name, size=64) for name in ("cat", "coffee")])


def forms(n):
    """Every accepted form of ``target`` for a batch of n images."""
    per_image = [CAT, "espresso"][:n]
    return {"None": None, "int": CAT, "label": CAT_LABEL, "list": per_image,
            "tensor": torch.tensor([CAT, 967][:n])}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_form_is_accepted_and_means_the_same(lite, batch, method):
    x = batch[:1] if one_image(method) else batch
    results = {name: METHODS[method](lite, x, target) for name, target in forms(len(x)).items()}
    if method == "class_model":
        return                          # from a zero image: nothing to compare but that it ran

    def same(a, b):
        return a == b if isinstance(a, list) else torch.equal(a, b)
    assert same(results["int"], results["label"])
    assert same(results["list"], results["tensor"])


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("bad, message", [(1000, "out of range"), ("no such thing", "No class"),
                                          ("wrong count", "for a batch of")])
def test_bad_targets_are_refused_before_any_forward_pass(lite, batch, method, bad, message):
    x = batch[:1] if one_image(method) else batch
    if bad == "wrong count":
        bad = [CAT] * (len(x) + 1)
    calls = []
    handle = lite.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(TargetError, match=message):
            METHODS[method](lite, x, bad)
    finally:
        handle.remove()
    assert calls == []


def test_none_is_each_images_top1(lite, batch):
    top1 = lite(batch).argmax(1)
    assert torch.equal(cam.grad_cam(lite, batch), cam.grad_cam(lite, batch, top1))
    assert torch.equal(attribution.saliency(lite, batch), attribution.saliency(lite, batch, top1))


def test_check_target_forms_and_errors(lite):
    assert check_target(lite, None, 3) is None
    assert check_target(lite, "Egyptian cat", 2).tolist() == [CAT, CAT]
    assert check_target(lite, [1, "goldfish"], 2).tolist() == [1, 1]
    assert class_index("Egyptian cat") == CAT and class_index(CAT) == CAT
    for bad, message in [(-1, "out of range"), (2.5, "int index or a label"),
                         (True, "int index or a label"), ("cat", "Did you mean")]:
        with pytest.raises(TargetError, match=message):
            check_target(lite, bad, 1)
