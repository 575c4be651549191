"""Downloads: once, cached, checked; offline mode never reaches for the network."""
import hashlib
import io
import tarfile

import pytest
from PIL import Image

from utils import downloads as D


def make_archive(path, n=5):
    with tarfile.open(path, "w:gz") as archive:
        for i in range(n):
            for split in ("train", "val"):
                buffer = io.BytesIO()
                size = (64, 48) if split == "val" else (80, 60)
                Image.new("RGB", size, (40 * i, 0, 0)).save(buffer, "JPEG")
                info = tarfile.TarInfo(f"set/{split}/c{i % 2}/img{i}.JPEG")
                info.size = buffer.tell()
                buffer.seek(0)
                archive.addfile(info, buffer)
    return path


def test_download_caches_and_checks(tmp_path, monkeypatch):
    source = make_archive(tmp_path / "set.tgz")
    url = source.as_uri()                                     # file://, no network
    cache = tmp_path / "cache"
    path = D.download(url, cache)
    assert path.read_bytes() == source.read_bytes()
    assert (cache / "set.tgz.sha256").read_text().strip() == hashlib.sha256(
        source.read_bytes()).hexdigest()

    with pytest.raises(OSError, match="expected 0000"):       # a pinned hash must match
        D.download(url, tmp_path / "other", sha256="0" * 64)
    with pytest.raises(OSError, match="MD5"):
        D.download(url, tmp_path / "third", md5="0" * 32)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    assert D.download(url, tmp_path / "fourth", md5=md5).exists()

    def no_network(*args, **kwargs):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(D, "_urlopen", no_network)
    assert D.download(url, cache) == path                      # second time: from the cache
    path.write_bytes(path.read_bytes()[:100])                  # a truncated cache is caught
    with pytest.raises(OSError, match="SHA-256"):
        D.download(url, cache)
    assert not path.exists()                                   # ... and removed


def test_offline_mode_serves_only_the_cache(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("offline mode must not touch the network")
    monkeypatch.setattr(D, "_urlopen", no_network)
    with pytest.raises(OSError, match="Offline mode"):         # the tests run offline
        D.download("https://example.org/painting.jpg", tmp_path)
    (tmp_path / "painting.jpg").write_bytes(b"cached bytes")
    assert D.download("https://example.org/painting.jpg", tmp_path).read_bytes() == b"cached bytes"


def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionResetError("connection reset")
    monkeypatch.setattr(D, "offline", lambda: False)
    monkeypatch.setattr(D, "_urlopen", broken)
    with pytest.raises(OSError, match="Could not download"):
        D.download("https://example.org/set.tgz", tmp_path)
    assert list(tmp_path.iterdir()) == []                      # no half file to trust later


def test_image_set_reads_either_split_of_the_archive(tmp_path, monkeypatch):
    source = make_archive(tmp_path / "set.tgz")
    monkeypatch.setitem(D.IMAGE_SETS, "tiny", {"url": source.as_uri(), "sha256": None,
                                               "root": "set/"})
    photos = D.image_set("tiny", n_images=3, cache_dir=tmp_path / "cache")
    assert len(photos) == 3 and all(im.size == (64, 48) for _, im in photos)
    train = D.image_set("tiny", n_images=10, cache_dir=tmp_path / "cache", split="train")
    assert len(train) == 5 and all(im.size == (80, 60) for _, im in train)
    with pytest.raises(KeyError, match="imagenette"):
        D.image_set("no-such-set")


def test_imagenette_is_pinned_to_the_checksum_torchvision_pins():
    from torchvision import datasets
    archives = getattr(getattr(datasets, "Imagenette", None), "_ARCHIVES", None)
    if archives is None:
        pytest.skip("this torchvision does not list Imagenette's archives")
    url, md5 = archives["160px"]
    assert D.IMAGE_SETS["imagenette-160"]["url"] == url
    assert D.IMAGE_SETS["imagenette-160"]["md5"] == md5
