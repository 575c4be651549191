"""Code paths that only a GPU takes, checked on the CPU: the "meta" device stands in for
a second device, and mocks for the CUDA calls (no GPU needed, a few milliseconds)."""
from unittest import mock

import pytest
import torch
from torch import nn

from utils import env, models
from utils.images import image_batch, one_image


def meta_net(dtype=torch.float32):
    return nn.Conv2d(3, 4, 3).to(device="meta", dtype=dtype)


def test_a_batch_follows_the_model_to_its_device():
    x = torch.zeros(1, 3, 8, 8)                        # a CPU batch, the model elsewhere
    assert image_batch(x, meta_net()).device.type == "meta"
    assert one_image(x, meta_net()).device.type == "meta"


def test_device_and_precision_change_together():
    moved = image_batch(torch.zeros(2, 3, 8, 8, dtype=torch.float64), meta_net(torch.float16))
    assert (moved.device.type, moved.dtype) == ("meta", torch.float16)


def test_a_batch_already_in_place_is_returned_as_it_is():
    x = torch.zeros(1, 3, 8, 8)
    assert image_batch(x, nn.Conv2d(3, 4, 3)) is x
    assert image_batch(x) is x                         # no model: no device to follow


def test_random_weights_leave_the_gpu_random_streams_alone():
    """weights="random" draws on the CPU; reseeding the GPU's generator (as torch.manual_seed
    does) would change the caller's CUDA random numbers, which fork_rng(devices=[]) does
    not restore."""
    state = torch.random.get_rng_state()
    tiny = lambda name, weights=None, **args: nn.Linear(4, 2)          # noqa: E731
    with mock.patch("torchvision.models.get_model", tiny), \
            mock.patch("torch.cuda.manual_seed_all") as cuda_seed, \
            mock.patch("torch.mps.manual_seed") as mps_seed:
        first, second = models._random("alexnet", 3), models._random("alexnet", 3)
    assert not cuda_seed.called and not mps_seed.called
    assert torch.equal(first.weight, second.weight)                  # still seeded
    assert torch.equal(torch.random.get_rng_state(), state)          # CPU stream untouched


def test_a_gpu_number_the_machine_lacks_is_refused_up_front():
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=1):
        assert env.pick_device("cuda:0") == torch.device("cuda:0")
        assert env.pick_device("cuda") == torch.device("cuda")
        with pytest.raises(RuntimeError, match="1 CUDA GPU"):
            env.pick_device("cuda:1")


def test_the_strongest_rule_masks_padding_on_the_activations_device():
    """CNN-Fixations' strongest-position rule masks the padding of a border window: the mask
    must live where the activations do (on a GPU, a CPU mask stops ``masked_fill``)."""
    from utils.fixations import _on_map
    assert _on_map(-1, -1, 3, 3, 5, 5, "meta").device.type == "meta"
    assert _on_map(-1, -1, 3, 3, 5, 5).tolist()[0] == [False, False, False]
    assert _on_map(0, 0, 3, 3, 5, 5, "meta") is None          # inside the map: no mask needed
