"""The up-convolutional decoder: the training script learns, the shipped weights invert."""
import sys
from pathlib import Path

import pytest
import torch

from utils import upconv
from utils.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import train_decoder  # noqa: E402


def test_decoder_upsamples_by_the_encoder_stride(lite):
    x = torch.rand(2, 3, 48, 40)
    code = upconv.encode(lite, x)
    assert code.shape[-2:] == (6, 5) and code.shape[1] == 40
    assert upconv.UpConvDecoder(40, 16)(code).shape == (2, 3, 48, 40)


def test_held_out_images_are_not_in_training():
    train, held = upconv.training_split()
    assert set(held) == set(upconv.HELD_OUT) and not set(train) & set(held) and len(train) >= 6


def test_training_script_lowers_validation_loss_and_saves_weights(tmp_path):
    out = tmp_path / "decoder.pt"
    history = train_decoder.main(["--steps", "40", "--crops", "96", "--size", "32",
                                  "--out", str(out), "--threads", "2"])
    assert history["val"][-1] < 0.7 * history["val"][0]
    loaded = upconv.load_decoder(out)
    assert loaded.info["held_out"] == list(upconv.HELD_OUT)
    assert out.stat().st_size < 5e6


def test_training_script_adds_a_downloaded_image_set(tmp_path, monkeypatch):
    # the online option, with the "download" served from a local archive (file:// URL)
    from test_downloads import make_archive
    from utils import downloads
    archive = make_archive(tmp_path / "set.tgz")
    monkeypatch.setattr(downloads, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setitem(downloads.IMAGE_SETS, "tiny", {"url": archive.as_uri(), "sha256": None,
                                                       "root": "set/"})
    out = tmp_path / "decoder.pt"
    train_decoder.main(["--steps", "2", "--crops", "16", "--size", "32", "--out", str(out),
                        "--image-set", "tiny", "--n-images", "4"])
    info = upconv.load_decoder(out).info
    assert info["image_set"] == "tiny"
    assert info["images"] == len(upconv.training_split()[0]) + 4
    assert (tmp_path / "cache" / "set.tgz").exists()          # downloaded once, cached


def test_shipped_weights_beat_the_mean_image_on_held_out_photos(lite):
    decoder = upconv.load_decoder()
    assert upconv.WEIGHTS_PATH.stat().st_size < 5e6
    spec = lite.spec
    held = torch.cat([spec.preprocess(name, size=64) for name in upconv.HELD_OUT])
    rgb = spec.denormalize(held)
    decoded = spec.denormalize(upconv.reconstruct(decoder, lite, held))
    train, _ = upconv.training_split()
    mean_image = upconv.random_crops(train, 128, 64).mean(0, keepdim=True)
    decoder_mse = (decoded - rgb).pow(2).flatten(1).mean(1)
    mean_mse = (mean_image - rgb).pow(2).flatten(1).mean(1)
    assert (decoder_mse < 0.7 * mean_mse).all()     # measured: about 0.5 on both photos


def test_reconstruct_rejects_sizes_the_decoder_cannot_produce(lite):
    with pytest.raises(ValueError, match="multiples of 8"):
        upconv.reconstruct(upconv.UpConvDecoder(), lite, torch.zeros(1, 3, 50, 50))
