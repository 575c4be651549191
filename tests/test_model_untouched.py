"""Every public function that runs a model evaluates it in eval mode and leaves it exactly as
found: weights and buffers bit-identical, every module's mode, every ``requires_grad``, the
in-place flags, no ``.grad``, no hook; and the input tensor unchanged. Walked once with the
model in eval mode (as ``load_model`` returns it) and once in train mode with a frozen stem
and an in-place ReLU6 (a model in the middle of fine-tuning)."""
import copy
import importlib
import inspect

import pytest
import torch
from torch import nn

from utils import (attribution, cam, class_model, deconvnet, deepdream, evaluation, exercises,
                   features, fixations, fooling, hooks, inversion, models, occlusion, optimize,
                   patches, receptive_field, style, targets, upconv)
from utils.hooks import count_hooks
from utils.images import load_image


class TinyZF(nn.Module):
    """A Conv/ReLU/MaxPool chain: the only kind of network the switch deconvnet takes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 16 * 16, 10))

    def forward(self, x):
        return self.head(self.features(x))


def small_photo():
    return load_image("cat").resize((80, 60))


def bank(m, x):
    patches._BANKS.clear()                   # the cache would skip the forward pass
    regions = patches.propose_regions([("cat", small_photo())], per_photo=3)
    return patches.build_feature_bank(m, regions, ["blocks.4"], size=64, batch_size=2,
                                      progress=False)


def rgb(m, x):
    return m.spec.denormalize(x).clamp(0, 1)


def under_a_rule(m, x):
    with attribution.backward_rule(m, "guided"):
        m(x)


# name: call(model, x) with small settings; x is one normalised 64×64 image
CALLS = {
    "hooks.layer_outputs": lambda m, x: hooks.layer_outputs(m, x, ["head"]),
    "targets.predicted_target": lambda m, x: targets.predicted_target(m, x, None),
    "models.top_k": lambda m, x: models.top_k(m, x),
    "features.stage_activations": lambda m, x: features.stage_activations(m, x),
    "features.embed": lambda m, x: features.embed(m, [small_photo()]),
    "patches.build_feature_bank": bank,
    "receptive_field.receptive_field": lambda m, x: receptive_field.receptive_field(m, "head", 64),
    "receptive_field.receptive_fields": lambda m, x: receptive_field.receptive_fields(
        m, ["blocks.4", "head"], 64),
    "receptive_field.gradient_footprint": lambda m, x: receptive_field.gradient_footprint(
        m, "blocks.4", 0, 1, 1, input_size=64),
    "deconvnet.project_with_rule": lambda m, x: deconvnet.project_with_rule(m, x, "blocks.4", 0),
    "deconvnet.top_activations": lambda m, x: deconvnet.top_activations(m, x, "blocks.4", [0], k=1),
    "deconvnet.ChannelProjector": lambda m, x: deconvnet.ChannelProjector(m, x, "blocks.4")(0),
    "upconv.encode": lambda m, x: upconv.encode(m, rgb(m, x)),
    "upconv.reconstruct": lambda m, x: upconv.reconstruct(upconv.load_decoder(), m, x),
    "upconv.train_decoder": lambda m, x: upconv.train_decoder(
        m, train_names=["cat"], val_names=["coffee"], steps=1, crops=2, val_crops=2, size=32,
        batch_size=2, eval_every=1, progress=False),
    "inversion.layer_order": lambda m, x: inversion.layer_order(m),
    "inversion.energy": lambda m, x: inversion.energy(
        m, x, ["stem"], [hooks.layer_outputs(m, x, "stem")["stem"][0]]),
    "inversion.default_tv_lambda": lambda m, x: inversion.default_tv_lambda(m, "blocks.4"),
    "inversion.default_tv_lambdas": lambda m, x: inversion.default_tv_lambdas(m, ["stem", "logits"]),
    "inversion.seconds_per_iteration": lambda m, x: inversion.seconds_per_iteration(m, x, ["stem"]),
    "inversion.invert": lambda m, x: inversion.invert(m, x, "blocks.4", steps=2, progress=False),
    "style.source_grams": lambda m, x: style.source_grams(m, x, ["stem"]),
    "style.texture_loss": lambda m, x: style.texture_loss(m, x, style.source_grams(m, x, ["stem"])),
    "style.style_transfer_loss": lambda m, x: style.style_transfer_loss(
        m, x, hooks.layer_outputs(m, x, "blocks.2")["blocks.2"], "blocks.2",
        style.source_grams(m, x, ["stem"])),
    "style.synthesise_texture": lambda m, x: style.synthesise_texture(
        m, x, ["stem", "blocks.1.expand"], steps=2, progress=False),
    "style.transfer_style": lambda m, x: style.transfer_style(
        m, x, x.flip(-1), steps=2, content_at="blocks.2", style_at=["stem"], progress=False),
    "style.average_pooling": lambda m, x: style.average_pooling(m),
    "deepdream.deepdream": lambda m, x: deepdream.deepdream(m, x, "blocks.4", steps=1, octaves=2,
                                                            progress=False),
    "deepdream.dream_octave": lambda m, x: deepdream.dream_octave(m, rgb(m, x), "blocks.4", 1,
                                                                  progress=False),
    "deepdream.jittered_loss": lambda m, x: deepdream.jittered_loss(m, "blocks.4")(rgb(m, x)),
    "deepdream.activation_norm": lambda m, x: deepdream.activation_norm(m, x, "dream"),
    "deepdream.step_seconds": lambda m, x: deepdream.step_seconds(m, "blocks.4", size=32),
    "class_model.class_model": lambda m, x: class_model.class_model(m, 1, size=32, steps=2,
                                                                    progress=False),
    "fooling.fool": lambda m, x: fooling.fool(m, x, 1, max_steps=2, progress=False),
    "optimize.optimize_image": lambda m, x: optimize.optimize_image(
        lambda y: hooks.layer_outputs(m, y, ["stem"])["stem"].pow(2).mean(), x, 2, model=m,
        progress=False),
    "evaluation.deletion_insertion": lambda m, x: evaluation.deletion_insertion(
        m, x, torch.rand(64, 64), pixels_per_step=64 * 64 // 2, progress=False),
    "evaluation.explanation_map": lambda m, x: evaluation.explanation_map("occlusion", m, x,
                                                                          fast=True),
    "evaluation.cascading_randomisation": lambda m, x: list(
        evaluation.cascading_randomisation(m, ["fc", "head"])),
    "fixations.record_forward": lambda m, x: fixations.record_forward(m, x),
    "fixations.backtrack": lambda m, x: fixations.backtrack(m, x),
    "fixations.official_position": lambda m, x: fixations.official_position(m),
    "fixations.cnn_fixations": lambda m, x: fixations.cnn_fixations(m, small_photo()),
    "fixations.cnn_fixations(multi_crop)": lambda m, x: fixations.cnn_fixations(
        m, small_photo(), multi_crop=True),
    "fixations.FixationExplorer": lambda m, x: fixations.FixationExplorer(m).points(small_photo()),
    "exercises.check_saliency": lambda m, x: exercises.check_saliency(attribution.saliency, m, x, 285),
    "exercises.check_positive_contributors": lambda m, x: exercises.check_positive_contributors(
        m, x, 1, 0),
    "cam.cam": lambda m, x: cam.cam(m, x),
    "cam.cam_applies": lambda m, x: cam.cam_applies(m, x),
    "cam.class_gradients": lambda m, x: cam.class_gradients(m, x, ["blocks.4", "head"], top=2),
    "cam.grad_cam": lambda m, x: cam.grad_cam(m, x, method="Grad-CAM++"),
    "cam.guided_grad_cam": lambda m, x: cam.guided_grad_cam(m, x),
    "cam.score_cam": lambda m, x: cam.score_cam(m, x, channels=4, progress=False),
    "cam.CamExplorer": lambda m, x: cam.CamExplorer(m, x, ["head"], top=2).all_classes("head", "CAM"),
    "attribution.class_scores": lambda m, x: attribution.class_scores(m, x),
    "attribution.backward_rule": under_a_rule,
    "attribution.count_functional_relus": lambda m, x: attribution.count_functional_relus(m, x),
    "attribution.saliency": lambda m, x: attribution.saliency(m, x),
    "attribution.class_saliencies": lambda m, x: attribution.class_saliencies(m, x, [1, 2]),
    "attribution.guided_backprop": lambda m, x: attribution.guided_backprop(m, x),
    "attribution.input_gradient(deconvnet)": lambda m, x: attribution.input_gradient(
        m, x, rule="deconvnet"),
    "attribution.smoothgrad": lambda m, x: attribution.smoothgrad(m, x, samples=2, progress=False),
    "attribution.integrated_gradients": lambda m, x: attribution.integrated_gradients(
        m, x, steps=2, progress=False),
    "attribution.completeness": lambda m, x: attribution.completeness(m, x, 1, torch.zeros_like(x)),
    "occlusion.strongest_feature_map": lambda m, x: occlusion.strongest_feature_map(m, x, "head"),
    "occlusion.occlusion": lambda m, x: occlusion.occlusion(m, x, size=32, stride=32, layer="head",
                                                            progress=False),
    "occlusion.LiveOccluder": lambda m, x: occlusion.LiveOccluder(m, x, size=16)(8, 8),
    "evaluation.methods_for": lambda m, x: evaluation.methods_for(m, x),
    "deepdream.guide_likeness": lambda m, x: deepdream.guide_likeness(m, x, x.flip(-1), "blocks.4"),
    "deepdream.closer_to_guide": lambda m, x: deepdream.closer_to_guide(m, x, x, x.flip(-1),
                                                                        "blocks.4"),
    "exercises.completeness_error": lambda m, x: exercises.completeness_error(
        m, x, 1, torch.zeros_like(x), 2),
    "exercises.check_ig_steps": lambda m, x: exercises.check_ig_steps(
        m, x, 1, torch.zeros_like(x), 0.5, [8], 128, 0.01),
    "fooling.random_sign_perturbation": lambda m, x: fooling.random_sign_perturbation(x, 0.01,
                                                                                       model=m),
    "fooling.fooled_by_direction": lambda m, x: fooling.fooled_by_direction(m, x, x, 1, trials=2),
    "inversion.code_error": lambda m, x: inversion.code_error(m, x, x, "blocks.4"),
    "receptive_field.whole_field_input": lambda m, x: receptive_field.whole_field_input(m,
                                                                                        "blocks.4"),
    "style.normalise": lambda m, x: style.normalise(m, ["cat"], size=32),
    "style.features": lambda m, x: style.features(m, x, ["stem"]),
    "style.layer_shares": lambda m, x: style.layer_shares(
        m, x, style.source_grams(m, x, ["stem", "blocks.2"])),
    "style.balanced_ratio": lambda m, x: style.balanced_ratio(m, x, x.flip(-1), content_at="blocks.2",
                                                              style_at=["stem"]),
    "style.transfer_targets": lambda m, x: style.transfer_targets(m, x, x.flip(-1)[..., :24, :24],
                                                                  "blocks.2", ["stem"]),
}
# on a plain Conv/ReLU/MaxPool chain, with a 1×3×32×32 input
ZF_CALLS = {
    "deconvnet.project_with_switches": lambda m, x: deconvnet.project_with_switches(
        m, x, "features.3", 1),
}


def snapshot(model):
    """Everything a method could change on a model, copied."""
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "no grad": [p.grad is None for p in model.parameters()],
            "inplace": [getattr(m, "inplace", None) for m in model.modules()],
            "hooks": count_hooks(model)}


def assert_same(before, after):
    assert before["state"].keys() == after["state"].keys()
    changed = [k for k, v in before["state"].items() if not torch.equal(v, after["state"][k])]
    assert changed == [], f"weights or buffers changed: {changed[:5]}"
    for key in ("training", "requires_grad", "no grad", "inplace"):
        assert before[key] == after[key], key
    assert after["hooks"] == 0


def set_mode(model, mode):
    """eval: as ``load_model`` returns it. train: training mode, the first layer frozen and
    one in-place activation, as a model in the middle of fine-tuning might be."""
    model.train(mode == "train")
    first = next(iter(model.children()))
    for p in model.parameters():
        p.requires_grad_(True)
    for p in first.parameters():
        p.requires_grad_(mode != "train")
    relus = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    for m in relus:
        m.inplace = False
    relus[-1].inplace = mode == "train"


@pytest.fixture(scope="module")
def networks(lite):
    """Copies, so that a function that did change its model cannot spoil other tests."""
    return {"lite": copy.deepcopy(lite), "zf": TinyZF()}


def walk(model, x, call, mode):
    set_mode(model, mode)
    before, x_before = snapshot(model), x.clone()
    modes_seen = []                       # a spy on a BatchNorm/ReLU: the mode of every pass
    spy = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.ReLU)))
    handle = spy.register_forward_pre_hook(lambda module, _: modes_seen.append(module.training))
    try:
        call(model, x)
    finally:
        handle.remove()
    assert_same(before, snapshot(model))
    assert torch.equal(x, x_before), "the input tensor was changed"
    assert not any(modes_seen), "the model ran in train mode"


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", list(CALLS) + list(ZF_CALLS))
def test_the_model_and_the_input_are_left_as_found(networks, mode, name, capsys):
    if name in ZF_CALLS:
        walk(networks["zf"], torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
             ZF_CALLS[name], mode)
    else:
        model = networks["lite"]
        walk(model, model.spec.preprocess("cat", size=64), CALLS[name], mode)


def test_the_walk_covers_every_model_taking_function():
    """A new public function that takes a model must join the walk (or be listed here as
    one that does not run it)."""
    not_running = {"features.first_layer_filters", "features.plot_filters", "hooks.model_guard",
                   "features.effective_gains", "features.following_batchnorm",
                   "hooks.count_hooks", "hooks.model_spec", "hooks.layer_path",
                   "hooks.resolve_layer", "hooks.unclipped_layer", "hooks.capture_activations",
                   "hooks.graph_from_layers", "models.class_labels", "models.valid_range",
                   "targets.check_target", "attribution.relu_modules",
                   "attribution.relu_ending_blocks", "deconvnet.switch_chain",
                   "evaluation.parameterised_layers", "style.texture_layers",
                   "style.style_layers", "style.content_layer", "fixations.trace",
                   "cam.classifier_weights", "exercises.check_first_conv_parameters",
                   "images.input_channels", "images.image_batch", "images.one_image",
                   "style.single_image", "widgets.layer_picker", "fixations.walk_places"}
    walked = {name.split("(")[0] for name in list(CALLS) + list(ZF_CALLS)}
    missing = []
    for module_name in ["attribution", "cam", "class_model", "deconvnet", "deepdream",
                        "evaluation", "exercises", "features", "fixations", "fooling", "hooks",
                        "images", "inversion", "models", "occlusion", "optimize", "patches",
                        "receptive_field", "style", "targets", "upconv", "widgets"]:
        module = importlib.import_module(f"utils.{module_name}")
        for name, function in vars(module).items():
            if name.startswith("_") or getattr(function, "__module__", None) != module.__name__:
                continue
            try:
                parameters = inspect.signature(function).parameters
            except (TypeError, ValueError):
                continue
            if "model" in parameters and f"{module_name}.{name}" not in walked | not_running:
                missing.append(f"{module_name}.{name}")
    assert missing == [], f"public functions that take a model but are not walked: {missing}"
