"""The up-convolutional decoder: the training script learns, the shipped weights invert."""
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from utils import upconv
from utils.images import load_image
from utils.inversion import layout_correlation, psnr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import train_decoder  # noqa: E402

# The shipped decoder on the held-out photos at 160 px (tools/train_decoder.py prints it):
# 7.4 and 8.1 dB above the mean image (cat, astronaut), layout correlation 0.80 and 0.88.
DECODER_GAIN_DB = 5.0
DECODER_LAYOUT = 0.7


def test_decoder_upsamples_by_the_encoder_stride(lite):
    x = torch.rand(2, 3, 48, 40)
    code = upconv.encode(lite, x)
    assert code.shape[-2:] == (6, 5) and code.shape[1] == 40
    assert upconv.UpConvDecoder(40, 16)(code).shape == (2, 3, 48, 40)


def test_held_out_images_are_not_in_training():
    train, held = upconv.training_split()
    assert set(held) == set(upconv.HELD_OUT) and not set(train) & set(held)
    assert len(train) >= 25 and any(str(upconv.TRAINING_DIR) in name for name in train)

    def thumbnail(name):                        # 32×32 gray levels, mean 0, norm 1
        t = TF.to_tensor(load_image(name).convert("L").resize((32, 32), Image.BILINEAR)).flatten()
        return (t - t.mean()) / (t - t.mean()).norm()

    # by content too: no training photo is a held-out one, as it is, mirrored or renamed
    held_thumbnails = [thumbnail(name) for name in held]
    held_thumbnails += [thumbnail(load_image(name).transpose(Image.FLIP_LEFT_RIGHT)) for name in held]
    for name in train:
        assert max(float(thumbnail(name) @ h) for h in held_thumbnails) < 0.9, name
    assert float(thumbnail(held[0]) @ thumbnail(load_image(held[0]).resize((200, 133)))) > 0.95  # the test can see a copy


def test_training_script_lowers_validation_loss_and_saves_weights(tmp_path):
    out = tmp_path / "decoder.pt"
    history = train_decoder.main(["--steps", "40", "--crops", "96", "--size", "32", "--eval-size", "32",
                                  "--out", str(out)])
    assert history["val"][-1] < 0.7 * history["val"][0]
    loaded = upconv.load_decoder(out)
    assert loaded.info["held_out"] == list(upconv.HELD_OUT)
    assert out.stat().st_size < 5e6


def test_training_is_seeded(tmp_path):
    runs = []
    for name in ("a.pt", "b.pt"):
        train_decoder.main(["--steps", "3", "--crops", "16", "--size", "32", "--eval-size", "32",
                            "--threads", "1", "--out", str(tmp_path / name)])
        runs.append(upconv.load_decoder(tmp_path / name).state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    train_decoder.main(["--steps", "3", "--crops", "16", "--size", "32", "--eval-size", "32",
                        "--threads", "1", "--seed", "1", "--out", str(tmp_path / "c.pt")])
    assert not torch.equal(upconv.load_decoder(tmp_path / "c.pt").state_dict()["body.0.weight"],
                           runs[0]["body.0.weight"])


def test_training_script_adds_a_downloaded_image_set(tmp_path, monkeypatch):
    # the online option, with the "download" served from a local archive (file:// URL)
    from test_downloads import make_archive
    from utils import downloads
    archive = make_archive(tmp_path / "set.tgz")
    monkeypatch.setattr(downloads, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setitem(downloads.IMAGE_SETS, "tiny", {"url": archive.as_uri(), "sha256": None,
                                                       "root": "set/"})
    out = tmp_path / "decoder.pt"
    train_decoder.main(["--steps", "2", "--crops", "16", "--size", "32", "--eval-size", "32",
                        "--out", str(out), "--image-set", "tiny", "--n-images", "4"])
    info = upconv.load_decoder(out).info
    assert info["image_set"] == "tiny"
    assert info["images"] == len(upconv.training_split()[0]) + 4
    assert (tmp_path / "cache" / "set.tgz").exists()          # downloaded once, cached


def test_shipped_weights_reconstruct_held_out_photos(lite):
    decoder = upconv.load_decoder()
    assert upconv.WEIGHTS_PATH.stat().st_size < 2e6
    spec = lite.spec
    held = torch.cat([spec.preprocess(name, size=160) for name in upconv.HELD_OUT])
    decoded = upconv.reconstruct(decoder, lite, held)
    train, _ = upconv.training_split()
    mean = spec.normalize(upconv.mean_image(train, 160)).expand_as(held)
    gain = psnr(decoded, held, spec) - psnr(mean, held, spec)
    assert (gain > DECODER_GAIN_DB).all()
    assert (layout_correlation(decoded, held, spec) > DECODER_LAYOUT).all()


def test_reconstruct_rejects_sizes_the_decoder_cannot_produce(lite):
    with pytest.raises(ValueError, match="multiples of 8"):
        upconv.reconstruct(upconv.UpConvDecoder(), lite, torch.zeros(1, 3, 50, 50))


def test_grayscale_names_finds_the_gray_photos_only():
    assert upconv.grayscale_names(["brick", "cat", "gravel"]) == ["brick", "gravel"]
