"""Files from the internet, downloaded once, cached and checked: a painting, an image set.

Notebooks work offline with the bundled photos; online they can use bigger material:

    path = download(url)                         # ~/.cache/visualizing-cnns/<file name>
    photos = image_set("imagenette-160", 60)     # [(name, PIL image)], read from the archive

``download`` reuses a cached file without touching the network and checks its SHA-256: the
one given, or else the hash recorded next to the file on its first download ("trust on
first use"), so a truncated or swapped file is noticed. In offline mode (``VCNN_OFFLINE``,
CI) it only serves the cache and ``file://`` URLs, and says so instead of hanging.
"""
import hashlib
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .env import offline
from .images import load_image

CACHE_DIR = Path.home() / ".cache" / "visualizing-cnns"
USER_AGENT = "visualizing-cnns lecture notebooks (https://github.com/dl4cv/visualizing-cnns)"

# Imagenette (fast.ai): a 10-class subset of ImageNet, Apache-2.0; the 160-px version, 94 MB.
# Its MD5 is the one torchvision pins (torchvision.datasets.Imagenette); the SHA-256 is
# recorded on the first download and checked on every later use.
IMAGE_SETS = {
    "imagenette-160": {
        "url": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        "sha256": None,
        "md5": "e793b78cc4c9e9a4ccc0c1155377a412",
        "root": "imagenette2-160/",           # with train/ and val/ below it
    },
}


def file_digest(path, algorithm="sha256"):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _urlopen(url, timeout=60):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def download(url, cache_dir=None, sha256=None, md5=None):
    """Download ``url`` once into ``cache_dir`` and check its SHA-256 (and ``md5`` if given,
    for files whose publishers pin an MD5); return the file's path."""
    cache_dir = Path(cache_dir or CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / Path(urllib.parse.urlparse(url).path).name
    recorded = path.with_name(path.name + ".sha256")
    if not path.exists():
        if offline() and not url.startswith("file:"):
            raise OSError(f"Offline mode (VCNN_OFFLINE=1): {path.name} is not cached, and "
                          "nothing is downloaded.")
        partial = path.with_name(path.name + ".part")
        try:
            with _urlopen(url) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=path.name,
                          leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
        except Exception as err:      # no network, HTTP error, full disk: all the same here
            partial.unlink(missing_ok=True)
            raise OSError(f"Could not download {url} ({err}). Check the connection, or use "
                          "the bundled images.") from None
        partial.rename(path)
    actual = file_digest(path)
    expected = sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    checks = [("SHA-256", actual, expected)]
    if md5 is not None:
        checks.append(("MD5", file_digest(path, "md5"), md5))
    for name, got, wanted in checks:
        if wanted is not None and got != wanted:
            path.unlink()
            raise OSError(f"{path.name} has {name} {got}, expected {wanted}: the download is "
                          "corrupt or the file changed. It was deleted; run again.")
    if not recorded.exists():
        recorded.write_text(actual + "\n")
    return path


def image_set(name="imagenette-160", n_images=40, seed=0, cache_dir=None, split="val"):
    """``n_images`` photos of a downloadable set (``IMAGE_SETS``) as [(name, PIL image)].

    The archive is downloaded once; photos of ``split`` ("train" or "val") are picked at
    random with ``seed`` and read straight out of the archive (nothing is unpacked).
    """
    if name not in IMAGE_SETS:
        raise KeyError(f"Unknown image set {name!r}; choose one of {list(IMAGE_SETS)}.")
    info = IMAGE_SETS[name]
    folder = f"{info['root']}{split}/"
    path = download(info["url"], cache_dir, info.get("sha256"), info.get("md5"))
    with tarfile.open(path) as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()
                          and m.name.startswith(folder)
                          and m.name.lower().endswith((".jpg", ".jpeg", ".png"))),
                         key=lambda m: m.name)
        if not members:
            raise OSError(f"{path.name} holds no images under {folder}.")
        chosen = np.random.default_rng(seed).choice(len(members), min(n_images, len(members)),
                                                    replace=False)
        photos = []
        for i in tqdm(sorted(chosen), desc=f"reading {name}", leave=False):
            data = archive.extractfile(members[i]).read()
            photos.append((Path(members[i].name).stem, load_image(data)))
    return photos
