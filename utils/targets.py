"""Which class to explain: the one ``target`` convention every method shares.

Every method that explains a class takes ``target``:

============================== =================================================
``None``                       each image's own top-1 prediction
``285`` or ``"Egyptian cat"``  that class for every image of the batch
``[285, "tabby, tabby cat"]``  one class per image (a list, tuple or 1-D tensor)
============================== =================================================

``check_target`` turns it into class indices and raises ``TargetError`` for a class out of
range, an unknown label or the wrong number of classes, *before* any forward pass. ``None``
stays ``None`` until the logits are known: ``choose_target`` then takes the top-1.
"""
import numpy as np
import torch

from .hooks import model_guard
from .models import IMAGENET_CLASSES, class_labels


class TargetError(ValueError):
    """A ``target`` that names no class of the model, or the wrong number of classes."""


def class_index(label, labels=IMAGENET_CLASSES):
    """One class index from an int or a label ("Egyptian cat"), with a clear error."""
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer, str)):
        raise TargetError(f"A class is an int index or a label such as 'Egyptian cat', not "
                          f"{label!r} ({type(label).__name__}).")
    if isinstance(label, str):
        if label in labels:
            return labels.index(label)
        near = [name for name in labels if label.lower() in name.lower()][:5]
        raise TargetError(f"No class called {label!r}." +
                          (f" Did you mean one of {near}?" if near else
                           " utils.models.top_k(model, x) lists the model's labels."))
    if not 0 <= int(label) < len(labels):
        raise TargetError(f"Class index {int(label)} is out of range 0..{len(labels) - 1}.")
    return int(label)


def check_target(model, target, n):
    """``target`` for a batch of ``n`` images -> None (top-1) or a LongTensor of n indices.

    Raises ``TargetError`` before any work: unknown label, index out of range, wrong count.
    """
    if target is None:
        return None
    if isinstance(target, (torch.Tensor, np.ndarray)):
        target = target.tolist()
    many = isinstance(target, (list, tuple))
    classes = list(target) if many else [target] * n
    if len(classes) != n:
        raise TargetError(f"Got {len(classes)} classes for a batch of {n} images: give one "
                          "class for all of them, or one per image.")
    labels = class_labels(model)
    return torch.tensor([class_index(c, labels) for c in classes], dtype=torch.long)


def choose_target(checked, logits):
    """The classes ``check_target`` returned (None = each image's top-1), as indices on the
    logits' device."""
    if checked is None:
        return logits.argmax(dim=1)
    if int(checked.max()) >= logits.shape[1]:
        raise TargetError(f"Class {int(checked.max())} is out of range: the model has "
                          f"{logits.shape[1]} outputs.")
    return checked.to(logits.device)


@torch.no_grad()
def predicted_target(model, x, target):
    """Indices of ``target`` for the batch ``x``; one forward pass only when it is None."""
    checked = check_target(model, target, x.shape[0])
    if checked is None:
        with model_guard(model):
            return model(x).argmax(dim=1)
    return checked.to(x.device)
