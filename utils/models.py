"""One registry of networks, each knowing its preprocessing and the layers methods need.

Notebooks never hard-code ``features[29]``: they ask for a layer by its *role*
("first_conv", "last_conv", "stages", ...) and every registered model answers. Roles:

================ ==============================================================
``first_conv``   the first convolution (its filters are drawn in notebook 01)
``stages``       one post-activation layer per resolution stage, early to late
``last_conv``    output of the last conv block, after its ReLU (CAM, Grad-CAM)
``penultimate``  the last hidden layer, whose output feeds the classifier
``classifier``   the final linear layer (class scores)
``dream``        the DeepDream layer (GoogLeNet's inception4c)
``content``      style-transfer content layer (VGG-19 conv4_2)
``style``        style/texture layers (VGG-19 conv1_1 ... conv5_1)
================ ==============================================================

``load_model(name)`` returns the torchvision network with its pretrained weights when they
are cached or can be downloaded, and otherwise falls back, with one printed line, to the
bundled EfficientNet-Lite0. The model comes back in eval mode, on the chosen device, with
``model.spec`` holding its ``ModelSpec``.
"""
import re
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torchvision.transforms import functional as TF

from .downloads import download
from .env import can_reach, pick_device
from .hooks import model_guard, model_spec
from .images import image_batch, load_image
from .lite0 import LiteNet, build_lite0

BUNDLED = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = list(torchvision.models._meta._IMAGENET_CATEGORIES)


@dataclass
class ModelSpec:
    """What a method needs to know about one network."""
    name: str
    paper: str
    layers: dict                      # role -> module path, or list of module paths
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size: int = 224                   # input side in pixels
    has_maxpool: bool = True          # deconvnet switches need max-pooling
    notes: str = ""
    labels: list = field(default_factory=lambda: IMAGENET_CLASSES)

    def preprocess(self, image, size=None, device=None):
        """Image (anything ``load_image`` reads) -> normalised 1×3×S×S tensor.

        The whole image is resized to S×S (no crop), so every pixel of the picture is seen
        and maps are overlaid on exactly what the network saw. x = (rgb - mean) / std.
        """
        size = size or self.size
        image = load_image(image).resize((size, size), Image.BICUBIC)
        x = self.normalize(TF.to_tensor(image).unsqueeze(0))
        return x.to(device) if device is not None else x

    def normalize(self, rgb):
        """RGB in [0, 1] (N×3×H×W) -> network input."""
        mean, std = self._stats(rgb)
        return (rgb - mean) / std

    def denormalize(self, x):
        """Network input (N×3×H×W) -> RGB, nominally in [0, 1]."""
        mean, std = self._stats(x)
        return x * std + mean

    def deprocess(self, x):
        """Network input (1×3×H×W or 3×H×W) -> H×W×3 float array in [0, 1] for plotting."""
        x = x.detach().float().cpu()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"deprocess takes one image; got a batch of {x.shape[0]}.")
            x = x[0]
        rgb = self.denormalize(x.unsqueeze(0))[0].clamp(0, 1)
        return rgb.permute(1, 2, 0).numpy()

    def valid_range(self, device=None):
        """Per-channel (low, high) of the normalised input: the image of black and of white."""
        low = self.normalize(torch.zeros(1, 3, 1, 1))
        high = self.normalize(torch.ones(1, 3, 1, 1))
        return low.to(device), high.to(device)

    def layer(self, role):
        """Module path(s) for a role, with a clear error for an unknown role."""
        if role not in self.layers:
            raise KeyError(f"{self.name} has no layer role {role!r}; roles: {sorted(self.layers)}")
        return self.layers[role]

    def _stats(self, x):
        shape = (1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std


def _vgg_layers(relu_ends, style, content):
    return {"first_conv": "features.0", "stages": [f"features.{i}" for i in relu_ends],
            "last_conv": f"features.{relu_ends[-1]}", "penultimate": "classifier.4",
            "classifier": "classifier.6", "dream": f"features.{relu_ends[3]}",
            "content": content, "style": style,
            # Gatys 2015 texture layers: conv1_1 (its ReLU), pool1 ... pool4
            "texture": ["features.1"] + [f"features.{i + 1}" for i in relu_ends[:4]]}


REGISTRY = {
    "alexnet": ModelSpec(
        "alexnet", "Krizhevsky et al. 2012 (torchvision's 64-filter variant)",
        {"first_conv": "features.0",
         "stages": ["features.1", "features.4", "features.7", "features.9", "features.11"],
         "last_conv": "features.11", "pool5": "features.12", "penultimate": "classifier.5",
         "classifier": "classifier.6", "dream": "features.9", "content": "features.9",
         "style": ["features.1", "features.4", "features.7", "features.9", "features.11"]}),
    "vgg16": ModelSpec(
        "vgg16", "Simonyan & Zisserman 2015",
        _vgg_layers([3, 8, 15, 22, 29], style=[f"features.{i}" for i in (1, 6, 11, 18, 25)],
                    content="features.20")),
    "vgg19": ModelSpec(
        "vgg19", "Simonyan & Zisserman 2015",
        _vgg_layers([3, 8, 17, 26, 35], style=[f"features.{i}" for i in (1, 6, 11, 20, 29)],
                    content="features.22")),
    "resnet50": ModelSpec(
        "resnet50", "He et al. 2016",
        {"first_conv": "conv1", "stages": ["relu", "layer1", "layer2", "layer3", "layer4"],
         "last_conv": "layer4", "penultimate": "avgpool", "classifier": "fc", "dream": "layer3",
         "content": "layer3", "style": ["relu", "layer1", "layer2", "layer3", "layer4"]}),
    "googlenet": ModelSpec(
        "googlenet", "Szegedy et al. 2015 (torchvision's, with BatchNorm)",
        {"first_conv": "conv1.conv",
         "stages": ["conv1", "conv3", "inception3b", "inception4c", "inception5b"],
         "last_conv": "inception5b", "penultimate": "avgpool", "classifier": "fc",
         "dream": "inception4c", "content": "inception4c",
         "style": ["conv1", "conv3", "inception3b", "inception4c", "inception5b"]},
        notes="Its ReLUs are functional (F.relu inside BasicConv2d): module hooks miss them."),
    BUNDLED: ModelSpec(
        BUNDLED, "Tan & Le 2019, Lite variant (bundled, works offline)",
        {"first_conv": "stem.0",
         "stages": ["stem", "blocks.2.depthwise", "blocks.4.depthwise", "blocks.10.depthwise",
                    "head"],
         "last_conv": "head", "penultimate": "pool", "classifier": "fc", "dream": "blocks.10",
         "content": "blocks.7",
         # post-ReLU6 layers at four resolutions (/2 twice, /4, /8, /16); block outputs (linear)
         # give noisy textures
         "style": ["stem", "blocks.1.expand", "blocks.3.expand", "blocks.5.expand", "blocks.11.expand"],
         "texture": ["stem", "blocks.1.expand", "blocks.2.expand", "blocks.3.expand", "blocks.4.expand"]},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), has_maxpool=False,
        notes="3×3 stride-2 stem, ReLU6, no max-pooling, global average pooling + FC head."),
}
DEFAULT_MODEL = "alexnet"


def available_models():
    """Names accepted by ``load_model``."""
    return list(REGISTRY)


def weights_url(name):
    """Where torchvision downloads the pretrained weights of ``name`` from."""
    return torchvision.models.get_model_weights(name).DEFAULT.url


def cached_weights_path(name):
    """Where torch.hub keeps those weights once downloaded (shared with torchvision)."""
    file_name = Path(urllib.parse.urlparse(weights_url(name)).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def load_model(name=DEFAULT_MODEL, device=None, verbose=True, weights="pretrained", seed=0):
    """A pretrained model from the registry, in eval mode on ``device``, with ``.spec``.

    ``device=None`` picks the best available one. A torchvision model whose weights are
    neither cached nor downloadable (a 3-second connection test first; a download that
    goes silent gives up, see ``utils.downloads``) is replaced, with one printed line, by
    the bundled EfficientNet-Lite0. ReLUs are made not in-place so that hooks and backward
    rules see every activation.

    ``weights="random"`` gives the untrained network instead: torchvision's own
    initialisation drawn with the seed ``seed`` (the same network on every machine),
    nothing downloaded (the bundled model: the initialisation torchvision gives its
    EfficientNets). Its ``spec.name`` says "(random weights)", so that it is never taken
    for the trained one.
    """
    if name not in REGISTRY:
        raise KeyError(f"Unknown model {name!r}; choose one of {available_models()}.")
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', not {weights!r} for {name!r}.")
    device = pick_device(device)               # a missing GPU is an error before any work
    spec = REGISTRY[name]
    if weights == "random":
        model = _random(name, seed)
        spec = replace(spec, name=f"{name} (random weights)")
    else:
        try:
            model = _build(name)
        except OSError as err:
            if verbose:
                print(f"{err} Using the bundled {BUNDLED} instead.")
            model, spec = build_lite0(), REGISTRY[BUNDLED]
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    model.spec = spec
    return model.eval().to(device)


def _random(name, seed):
    """The torchvision network ``name`` as its builder initialises it, with a fixed seed."""
    with torch.random.fork_rng(devices=[]):     # the caller's random stream is untouched
        # the weights are drawn on the CPU: seed its generator only (torch.manual_seed would
        # also reseed the GPU's, which fork_rng(devices=[]) does not restore)
        torch.random.default_generator.manual_seed(seed)
        if name == BUNDLED:
            return _random_lite0()
        args = {k: v for k, v in PRETRAINED_ARGS.get(name, {}).items() if k != "init_weights"}
        model = torchvision.models.get_model(name, weights=None, **args)
    return _without_training_heads(name, model)


def _random_lite0():
    """EfficientNet-Lite0's layers initialised as torchvision initialises its EfficientNets:
    Kaiming-normal convolutions (fan-out), BatchNorm as the identity, a uniform classifier."""
    from efficientnet_lite_pytorch import EfficientNet
    model = LiteNet(EfficientNet.from_name("efficientnet-lite0"))
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Linear):
            bound = module.out_features ** -0.5
            torch.nn.init.uniform_(module.weight, -bound, bound)
            torch.nn.init.zeros_(module.bias)
    return model


def _build(name):
    """The network with its pretrained weights, downloaded once; ``OSError`` if impossible."""
    if name == BUNDLED:
        return build_lite0()
    path = cached_weights_path(name)
    if not path.exists():
        url = weights_url(name)
        where = urllib.parse.urlparse(url)
        if not can_reach(where.hostname, where.port or 443):
            raise OSError(f"Offline: no cached {name} weights and no connection.")
        digest = re.search(r"-([0-9a-f]{8,})\.", path.name)  # torch.hub: a SHA-256 prefix
        download(url, path.parent, sha256=digest.group(1) if digest else None)
    try:
        return _from_state_dict(name, path)
    except Exception as err:  # a damaged file, a full disk, ...
        raise OSError(f"Could not load {name} weights from {path} "
                      f"({type(err).__name__}: {err}).") from None


# What torchvision's builders set when they load pretrained weights (weights=None does not).
PRETRAINED_ARGS = {"googlenet": {"transform_input": True, "aux_logits": True,
                                 "init_weights": False}}


def _from_state_dict(name, path):
    """The torchvision network ``name`` with the weights saved at ``path``."""
    with torch.device("meta"):                 # no memory, no random init: weights come next
        model = torchvision.models.get_model(name, weights=None, **PRETRAINED_ARGS.get(name, {}))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    return _without_training_heads(name, model)


def _without_training_heads(name, model):
    """As torchvision does after loading: GoogLeNet's auxiliary heads only serve training."""
    if name == "googlenet":
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model


def class_labels(model):
    """The model's class names (ImageNet's for a model without a spec)."""
    spec = model_spec(model)
    return spec.labels if spec is not None else IMAGENET_CLASSES


def valid_range(model, device=None):
    """(low, high): the normalised black and white of ``model``'s input (RGB [0, 1] for a
    model without a spec), the box that image optimisation keeps pixels in."""
    spec = model_spec(model)
    if spec is not None:
        return spec.valid_range(device)
    return torch.zeros(1, 3, 1, 1, device=device), torch.ones(1, 3, 1, 1, device=device)


@torch.no_grad()
def top_k(model, x, k=5):
    """The k most probable classes for one image as [(label, probability), ...]."""
    x = image_batch(x.unsqueeze(0) if torch.is_tensor(x) and x.dim() == 3 else x, model)
    if x.shape[0] != 1:
        raise ValueError(f"top_k takes one image; got a batch of {x.shape[0]}.")
    labels = class_labels(model)
    with model_guard(model):                     # eval mode, the model left as found
        probs = model(x).softmax(dim=1)[0]
    values, indices = probs.topk(k)
    return [(labels[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
