"""Class activation maps: CAM, Grad-CAM and their relatives, for any registered CNN.

Every map here is a weighted sum of one layer's feature maps A^k (K channels, h×w):

    CAM        (Zhou et al. 2016)        M_c = Σ_k w_k^c A^k          w = classifier weights
    Grad-CAM   (Selvaraju et al. 2017)   L_c = ReLU(Σ_k α_k^c A^k)    α_k^c = mean_ij ∂y^c/∂A^k_ij
    counterfactual Grad-CAM              the same with -∂y^c/∂A^k
    Grad-CAM++ (Chattopadhay et al. 2018) α weighted by higher-order terms, positive gradients only
    LayerCAM   (Jiang et al. 2021)       L_c = ReLU(Σ_k ReLU(∂y^c/∂A^k) ⊙ A^k)   (per pixel)
    Score-CAM  (Wang et al. 2020)        α_k^c = softmax score of the image masked by A^k

y^c is the class score *before* the softmax. Maps come back at the layer's resolution
(h×w, raw values); ``upsample`` resizes them bilinearly to the image, and only the display
normalises them. Layers are chosen by role ("last_conv", "stages") or by module path.

All functions take a batch (N×3×H×W) and a ``target`` (None = each image's top
prediction, an int or label for all, or one per image: ``utils.targets``), and leave the
model as found.
"""

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attribution import guided_backprop
from .env import progress_bar
from .hooks import capture_activations, graph_from_layers, model_guard, model_spec, resolve_layer
from .images import image_batch, one_image
from .localize import bounding_box, draw_box
from .plotting import STRETCHED, normalize_map, resize_map, show_heatmap, show_map, to_numpy_image, update_map
from .targets import check_target, choose_target
from .widgets import LAYOUT, STYLE, class_picker, connect

CAM_THRESHOLD = 0.20        # CAM paper: box around the largest region above 20% of the max
GRAD_CAM_THRESHOLD = 0.15   # Grad-CAM paper: 15% of the max


# ----------------------------------------------------------------------------- the maps
def weighted_sum(activations, weights):
    """Σ_k weights_k · A^k for every image: N×K×h×w and N×K (or N×K×h×w) -> N×h×w."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    return (weights * activations).sum(dim=1)


def cam_map(activations, class_weights):
    """CAM, Zhou et al. eq. (2): M_c(x, y) = Σ_k w_k^c f_k(x, y). No gradient involved."""
    return weighted_sum(activations, class_weights)


def grad_cam_map(activations, gradients, relu=True):
    """Grad-CAM, Selvaraju et al. eqs. (1)-(2).

    α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij   (global-average-pool the gradients)
    L^c   = ReLU(Σ_k α_k^c A^k)       (keep only what raises the class score)
    """
    alpha = gradients.mean(dim=(2, 3))
    heatmap = weighted_sum(activations, alpha)
    return heatmap.clamp(min=0) if relu else heatmap


def counterfactual_map(activations, gradients):
    """Counterfactual Grad-CAM: negated gradients, i.e. regions whose removal raises y^c."""
    return grad_cam_map(activations, -gradients)


def grad_cam_pp_map(activations, gradients):
    """Grad-CAM++, Chattopadhay et al. eq. (19), with Y^c = exp(S^c) so only ∂S/∂A is needed.

    α_ij^kc = g² / (2 g² + Σ_ab A^k_ab · g³),   w_k^c = Σ_ij α_ij^kc · ReLU(g_ij),
    L^c = ReLU(Σ_k w_k^c A^k), with g = ∂S^c/∂A^k_ij. Changes from Grad-CAM: only positive
    gradients count, and each pixel's weight is normalised so several instances all show.
    """
    g2, g3 = gradients ** 2, gradients ** 3
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
    alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    weights = (alpha * gradients.clamp(min=0)).sum(dim=(2, 3))
    return weighted_sum(activations, weights).clamp(min=0)


def layer_cam_map(activations, gradients):
    """LayerCAM, Jiang et al. eq. (6): L^c = ReLU(Σ_k ReLU(∂y^c/∂A^k) ⊙ A^k).

    Changes from Grad-CAM: a weight per *pixel* instead of one per channel, so early,
    high-resolution layers give sharp maps instead of noise.
    """
    return weighted_sum(activations, gradients.clamp(min=0)).clamp(min=0)


GRADIENT_METHODS = {"Grad-CAM": grad_cam_map, "Counterfactual": counterfactual_map,
                    "Grad-CAM++": grad_cam_pp_map, "LayerCAM": layer_cam_map}


def upsample(maps, size):
    """Bilinear upsampling of N×h×w maps to size (H, W), as both papers do."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0]


# ----------------------------------------------------------------------------- CAM
def classifier_weights(model, activations, logits, classifier="classifier"):
    """The classifier's weight matrix, after checking that logits = W · GAP(A) + b.

    CAM is only defined where global average pooling of this layer feeds the linear
    classifier directly (ResNet, GoogLeNet, EfficientNet). We check it numerically,
    so a wrong layer or a VGG/AlexNet head gets a clear error instead of a wrong map.
    """
    fc = resolve_layer(model, classifier)
    if not isinstance(fc, nn.Linear) or fc.in_features != activations.shape[1]:
        raise ValueError(
            f"CAM needs a network whose last conv layer is global-average-pooled straight "
            f"into a linear classifier. Here the layer has {activations.shape[1]} channels "
            f"and the classifier is {fc}. {getattr(model_spec(model), 'name', 'This model')} "
            "is not such a network at this layer: use grad_cam instead.")
    predicted = F.linear(activations.mean(dim=(2, 3)), fc.weight, fc.bias)
    if not torch.allclose(predicted, logits, atol=1e-3 * (1 + logits.abs().max().item())):
        raise ValueError("The classifier's output is not W · GAP(layer) + b for this layer "
                         "(something sits between them). CAM does not apply: use grad_cam.")
    return fc.weight.detach()


def cam(model, x, target=None, layer="last_conv", classifier="classifier"):
    """Class activation maps (Zhou et al. 2016): one forward pass, no backward.

    Returns N×h×w raw maps at the layer's resolution: M_c = Σ_k w_k^c A^k, where w^c is
    the classifier's row for class c (the bias is left out, as in the paper).
    """
    x = image_batch(x, model)
    targets = check_target(model, target, x.shape[0])
    with model_guard(model), torch.no_grad(), capture_activations(model, layer) as acts:
        logits = model(x)
    activations = acts[layer]
    weights = classifier_weights(model, activations, logits, classifier)
    chosen = choose_target(targets, logits)
    return cam_map(activations, weights[chosen])


def cam_applies(model, x, layer="last_conv", classifier="classifier"):
    """True if the global average of ``layer`` feeds the classifier directly (CAM works)."""
    try:
        cam(model, x[:1], layer=layer, classifier=classifier)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- Grad-CAM
def class_gradients(model, x, layers, target=None, top=None):
    """One forward pass; activations of ``layers`` and ∂y^c/∂A for each requested class.

    ``target``: as elsewhere (None = top-1, one class for all or one per image); or
    ``top=k`` for each image's k most probable classes.
    Returns (logits N×1000, classes N×C, {layer: A N×K×h×w}, {layer: grads N×C×K×h×w}).
    Autograd records the pass only from the earliest layer on (``graph_from_layers``), and
    ``torch.autograd.grad`` goes back to the activations only: no parameter receives a
    ``.grad``. The graph is kept for the C backward passes, so a new class never needs a
    new forward.
    """
    x = image_batch(x, model)
    targets = check_target(model, target, x.shape[0])
    layers = [layers] if isinstance(layers, str) else list(layers)
    with model_guard(model), graph_from_layers(model, layers) as acts:
        logits = model(x)
        missing = [name for name in layers if name not in acts]
        if missing:
            raise ValueError(f"The forward pass never ran layer(s) {missing}: pick layers "
                             "the model uses (model.spec.layers lists the roles).")
        if top is not None:
            chosen = logits.topk(top, dim=1).indices
        else:
            chosen = choose_target(targets, logits)[:, None]
        outputs = [acts[name] for name in layers]
        flat = [name for name, a in zip(layers, outputs) if a.dim() != 4]
        if flat:
            raise ValueError(f"Layer(s) {flat} give no feature maps (output not N×K×h×w): "
                             "class activation maps need a convolutional layer, e.g. "
                             "'last_conv' or one of model.spec.layer('stages').")
        per_class = []
        for j in range(chosen.shape[1]):
            score = logits.gather(1, chosen[:, j:j + 1]).sum()   # y^c before the softmax
            per_class.append(torch.autograd.grad(score, outputs,
                                                 retain_graph=j + 1 < chosen.shape[1]))
    grads = {name: torch.stack([g[i] for g in per_class], dim=1) for i, name in enumerate(layers)}
    acts = {name: a.detach() for name, a in zip(layers, outputs)}
    return logits.detach(), chosen, acts, grads


def grad_cam(model, x, target=None, layer="last_conv", method="Grad-CAM"):
    """Grad-CAM maps (N×h×w, raw, at the layer's resolution) for one class per image.

    ``layer``: a role or a module path (any conv layer). ``method``: "Grad-CAM",
    "Counterfactual", "Grad-CAM++" or "LayerCAM" (they share the same gradients).
    """
    if method not in GRADIENT_METHODS:
        raise KeyError(f"Unknown method {method!r}; choose one of {list(GRADIENT_METHODS)}.")
    _, _, acts, grads = class_gradients(model, x, layer, target)
    return GRADIENT_METHODS[method](acts[layer], grads[layer][:, 0])


# ----------------------------------------------------------------------------- guided
def guided_grad_cam(model, x, target=None, layer="last_conv"):
    """Guided Grad-CAM: guided backprop × Grad-CAM upsampled bilinearly to the input.

    Guided backprop is ``utils.attribution.guided_backprop`` (the guided ReLU rule, also on
    GoogLeNet's functional ReLUs). Returns (product N×3×H×W, guided backprop N×3×H×W,
    upsampled Grad-CAM N×H×W); show the first two with ``attribution.to_rgb``.
    """
    _, chosen, acts, grads = class_gradients(model, x, layer, target)
    heatmap = upsample(grad_cam_map(acts[layer], grads[layer][:, 0]), x.shape[-2:])
    guided = guided_backprop(model, x, chosen[:, 0])
    return guided * heatmap[:, None], guided, heatmap


# ----------------------------------------------------------------------------- Score-CAM
@torch.no_grad()
def score_cam(model, x, target=None, layer="last_conv", channels=None, batch_size=32,
              progress=True):
    """Score-CAM (Wang et al. 2020): no gradients; each channel is weighted by the class
    probability of the image masked with that channel's (upsampled, min-max scaled) map.

    α_k^c = softmax(f(x ∘ H_k))_c,  L^c = ReLU(Σ_k α_k^c A^k). Masking multiplies the
    normalised input, so masked-out pixels become the mean colour. Channels that are
    constant over the image are skipped (min-max scaling leaves them no mask): exact for the
    all-zero ones, which add nothing to the sum; a constant non-zero one would add only a
    uniform offset. ``channels=None`` keeps all the others; ``channels=k`` only the k with
    the largest mean activation, an approximation that trades faithfulness for k instead of
    K forward passes. The paper subtracts the score of a baseline image, f(x_b); like the
    authors' code, this leaves it out.
    An interrupt (■) is re-raised (a partial sum means nothing), the model left as found.
    """
    x = image_batch(x, model)
    targets = check_target(model, target, x.shape[0])
    maps = []
    with model_guard(model):
        with capture_activations(model, layer) as acts:
            logits = model(x)
        chosen = choose_target(targets, logits)
        for n in range(x.shape[0]):
            activations = acts[layer][n]
            flat = activations.flatten(1)
            alive = (flat.amax(1) > flat.amin(1)).nonzero()[:, 0]
            if channels is not None:
                strongest = flat[alive].mean(1).argsort(descending=True)[:channels]
                alive = alive[strongest]
            masks = upsample(activations[alive], x.shape[-2:])
            low = masks.flatten(1).amin(1)[:, None, None]
            high = masks.flatten(1).amax(1)[:, None, None]
            masks = (masks - low) / (high - low).clamp(min=1e-12)
            weights = torch.zeros(activations.shape[0], device=x.device)
            starts = range(0, len(alive), batch_size)
            for s in progress_bar(starts, progress, f"Score-CAM image {n + 1}"):
                masked = x[n:n + 1] * masks[s:s + batch_size, None]
                weights[alive[s:s + batch_size]] = model(masked).softmax(1)[:, chosen[n]]
            maps.append(weighted_sum(activations[None], weights[None]).clamp(min=0)[0])
    return torch.stack(maps)


# ------------------------------------------- identities (unit tests; ``cam`` enforces the first)
def cam_explains_score(cam_map, bias, logit, atol=1e-3):
    """Zhou et al.'s eq. (2) read backwards: on a GAP network the class score is the mean of
    the raw map plus the bias, S_c = (1/Z) Σ_xy M_c(x, y) + b_c. True if the h×w ``cam_map``
    gives ``logit`` up to float rounding (``atol``); a map of another class, of another
    layer, or a display-normalised one does not."""
    return bool(torch.allclose(cam_map.mean() + bias, torch.as_tensor(logit, dtype=cam_map.dtype), atol=atol))


def equals_relu_cam(grad_cam, cam, tolerance=1e-3):
    """Selvaraju et al. §3.1: on a GAP network α_k^c = w_k^c / Z, so Z · Grad-CAM = ReLU(CAM).
    True if the h×w (or N×h×w) maps satisfy it within ``tolerance`` (relative and absolute);
    Grad-CAM of another class or layer does not."""
    z = cam.shape[-1] * cam.shape[-2]
    return grad_cam.shape == cam.shape and bool(torch.allclose(
        z * grad_cam, cam.clamp(min=0), rtol=tolerance, atol=tolerance))


# ----------------------------------------------------------------------------- explorer
class CamExplorer:
    """Everything the widget needs for one image, computed once.

    One forward pass captures the activations of ``layers``; one backward per top-k class
    gives their gradients. After that, switching class, layer or method is arithmetic on
    cached tensors: no forward pass, and CAM never needed a backward. The first look at a
    (layer, method) computes the maps of all k classes at once; a class switch is a lookup.
    """

    def __init__(self, model, x, layers=None, top=10, classifier="classifier"):
        x = one_image(x, model)
        layers = list(layers) if layers is not None else list(model.spec.layer("stages"))
        if model.spec.layer("last_conv") not in layers:       # CAM's layer is always cached
            layers.append(model.spec.layer("last_conv"))
        self.model, self.x, self.layers, self.classifier = model, x, layers, classifier
        self.logits, self.classes, self.acts, self.grads = class_gradients(model, x, layers, top=top)
        self.probs = self.logits.softmax(1)[0]
        labels = model.spec.labels
        self.labels = [labels[c] for c in self.classes[0].tolist()]
        self.cam_layer = next((name for name in reversed(layers) if self._feeds_classifier(name)), None)
        self._maps = {}                                     # (layer, method) -> C×h×w

    def _feeds_classifier(self, name):
        try:
            classifier_weights(self.model, self.acts[name], self.logits, self.classifier)
            return True
        except ValueError:
            return False

    def predictions(self):
        """[(label, probability)] of the cached top-k classes."""
        return [(label, float(self.probs[c])) for label, c in zip(self.labels, self.classes[0].tolist())]

    def methods(self):
        return (["CAM"] if self.cam_layer else []) + list(GRADIENT_METHODS)

    def heatmap(self, label, layer, method="Grad-CAM"):
        """Raw h×w map for a cached class (label or index), layer and method."""
        j = self.labels.index(label) if isinstance(label, str) else self.classes[0].tolist().index(label)
        return self.all_classes(layer, method)[j]

    def all_classes(self, layer, method):
        """Maps of every cached class (C×h×w) for one layer and method, computed once."""
        layer = self.cam_layer if method == "CAM" else layer
        if (layer, method) not in self._maps:
            if method == "CAM":
                if self.cam_layer is None:
                    raise ValueError("CAM needs a GAP network (ResNet, GoogLeNet, EfficientNet).")
                weights = classifier_weights(self.model, self.acts[layer], self.logits,
                                             self.classifier)[self.classes[0]]   # C×K
                maps = cam_map(self.acts[layer].expand(len(weights), -1, -1, -1), weights)
            else:
                maps = GRADIENT_METHODS[method](self.acts[layer].expand_as(self.grads[layer][0]),
                                                self.grads[layer][0])
            self._maps[layer, method] = maps
        return self._maps[layer, method]


# ----------------------------------------------------------------------------- figures
def show_cam(image, heatmap, title=None, fraction=None, axes=None):
    """Two panels: the raw map at the layer's resolution, and the overlay on the image,
    with the box of the largest region above ``fraction`` of the max when given."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.6, 3.3), gridspec_kw={"width_ratios": [1, 1.25]})
    heatmap = torch.as_tensor(heatmap).detach().cpu()
    show_map(heatmap.numpy(), ax=axes[0], title=f"raw map {tuple(heatmap.shape)}")
    image = to_numpy_image(image)
    show_heatmap(image, heatmap.numpy(), ax=axes[1], title=title)
    if fraction is not None:
        draw_box(axes[1], bounding_box(heatmap, fraction, image.shape[:2]))
    return axes[0].figure


def draw_explorer(explorer, label, layer, method):
    """The widget's figure for one (class, layer, method), from the explorer's cache."""
    fig = explorer_figure(explorer)
    update_explorer(fig, explorer, label, layer, method)
    return fig


def explorer_figure(explorer):
    """The explorer's two panels, drawn once: the raw map and the overlay with its box, both
    normalized from min to max on a fixed colour scale (``update_explorer`` fills them)."""
    image = explorer.model.spec.deprocess(explorer.x)
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3), gridspec_kw={"width_ratios": [1, 1.25]})
    show_map(np.zeros((7, 7)), ax=axes[0], title="raw map")
    show_heatmap(image, np.zeros(image.shape[:2]), ax=axes[1], title="map")
    for ax in axes:
        ax.images[-1].colorbar.set_label(STRETCHED, fontsize=10)
    draw_box(axes[1], (0, 0, 1, 1))
    fig.suptitle("layer", fontsize=11, fontweight="normal")
    fig.tight_layout()
    return fig


def update_explorer(fig, explorer, label, layer, method):
    """Another (class, layer, method) in an ``explorer_figure``, in place; returns the artists
    that changed (for ``widgets.connect``)."""
    heatmap = explorer.heatmap(label, layer, method).detach().float().cpu().numpy()
    layer = explorer.cam_layer if method == "CAM" else layer
    p = dict(explorer.predictions())[label]
    fraction = CAM_THRESHOLD if method == "CAM" else GRAD_CAM_THRESHOLD
    raw_ax, overlay_ax = fig.axes[0], fig.axes[1]
    heat = overlay_ax.images[-1]
    box = bounding_box(heatmap, fraction, heat.get_array().shape)
    frame = overlay_ax.patches[0]
    frame.set_visible(box is not None)
    if box is not None:
        frame.set_bounds(box[0] - 0.5, box[1] - 0.5, box[2] - box[0], box[3] - box[1])
    raw_ax.set_title(f"raw map {tuple(heatmap.shape)}")
    overlay_ax.set_title(f"{method}: {label} ({p:.2f})", fontsize=11)
    title = fig.suptitle(f"layer {layer}; box at {fraction:.0%} of the max", fontsize=11,
                         fontweight="normal")
    normalized = normalize_map(heatmap)
    return (update_map(raw_ax.images[0], normalized, limits=(0, 1)) + [raw_ax.title]
            + update_map(heat, resize_map(normalized, heat.get_array().shape), limits=(0, 1))
            + [frame, overlay_ax.title, title])


def cam_widget(explorer, layer=None, method="Grad-CAM"):
    """Class (top-k), layer and method controls redrawing ``draw_explorer`` from the cache."""
    controls = {"label": class_picker(explorer.predictions()),
                "layer": W.Dropdown(options=explorer.layers, value=layer or explorer.layers[-1],
                                    description="layer", layout=LAYOUT, style=STYLE),
                "method": W.Dropdown(options=explorer.methods(), value=method,
                                     description="method", layout=LAYOUT, style=STYLE)}
    figure = explorer_figure(explorer)         # drawn once; each change fills it in place
    box = connect(lambda label, layer, method: update_explorer(figure, explorer, label, layer,
                                                               method), **controls)
    box.controls = controls
    return box
