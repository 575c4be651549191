"""Files from the internet, downloaded once, cached and checked: a painting, an image set.

Notebooks work offline with the bundled photos; online they can use bigger material:

    path = download(url)                         # ~/.cache/visualizing-cnns/<file name>
    photos = image_set("imagenette-160", 60)     # utils.images: [(name, PIL image)] from the archive

``download`` reuses a cached file without touching the network and checks its SHA-256: the
one given, or else the hash recorded next to the file on its first download ("trust on
first use"), so a truncated or swapped file is noticed. In offline mode (``VCNN_OFFLINE``,
CI) it only serves the cache and ``file://`` URLs, and says so instead of hanging.

Every download here (also the model weights and image URLs) goes through ``stream``: a
progress bar, and a ``DownloadError`` after ``STALL_TIMEOUT`` seconds of silence instead
of a cell that hangs. A file is written under a temporary name in its folder and renamed
only once complete and checked, so an interrupted download leaves nothing to trust later.
"""
import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .env import offline, within

CACHE_DIR = Path.home() / ".cache" / "visualizing-cnns"
USER_AGENT = "visualizing-cnns lecture notebooks (https://github.com/dl4cv/visualizing-cnns)"
STALL_TIMEOUT = 10.0   # seconds of silence (connecting, or between two reads) before giving up
OPEN_TIMEOUT = 15.0    # seconds for the name lookup, the connection and the reply's headers

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


class DownloadError(OSError):
    """A download that failed, stalled, ended early or did not match its checksum."""


def file_digest(path, algorithm="sha256"):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _urlopen(url, timeout):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def stream(url, out, desc=None):
    """Copy ``url`` into the binary file ``out`` with a progress bar; return the byte count.

    The socket gives up after ``STALL_TIMEOUT`` seconds of silence, on connecting and on
    every read. The name lookup has no timeout of its own, so the opening (lookup,
    connection, reply headers) runs under ``within(OPEN_TIMEOUT)``. A reply shorter than
    its Content-Length is an error too (urllib returns it without complaint).
    """
    try:
        response = within(OPEN_TIMEOUT, _urlopen, url, STALL_TIMEOUT)
        with response:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            with tqdm(total=total, unit="B", unit_scale=True, leave=False,
                      desc=desc or Path(urllib.parse.urlparse(url).path).name) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    done += len(block)
                    bar.update(len(block))
    except Exception as err:              # no network, silence, HTTP error, full disk
        reason = getattr(err, "reason", err)          # urllib wraps some in a URLError
        if isinstance(reason, TimeoutError) and "no answer" not in str(reason):
            reason = f"no answer for {STALL_TIMEOUT:g} s"     # the socket's timeout
        raise DownloadError(f"Could not download {url} ({reason}). Check the address and "
                            "the connection, then run again.") from None
    if total is not None and done != total:
        raise DownloadError(f"Could not download {url}: the connection closed after {done} "
                            f"of {total} bytes. Run again.")
    return done


def download(url, cache_dir=None, sha256=None, md5=None):
    """Download ``url`` once into ``cache_dir`` and check its SHA-256 (and ``md5`` if given,
    for files whose publishers pin an MD5); return the file's path.

    ``sha256`` may be the first characters of the digest only, as in torch.hub file names.
    """
    cache_dir = Path(cache_dir or CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / Path(urllib.parse.urlparse(url).path).name
    recorded = path.with_name(path.name + ".sha256")
    if sha256 is None and recorded.exists():
        sha256 = recorded.read_text().strip()
    if path.exists():
        _check(path, sha256, md5)
    else:
        _fetch(url, path, sha256, md5)
    if not recorded.exists():
        recorded.write_text(file_digest(path) + "\n")
    return path


def _fetch(url, path, sha256, md5):
    """``url`` into ``path`` through a temporary file, renamed once complete and checked."""
    if offline() and not url.startswith("file:"):
        raise DownloadError(f"Offline mode (VCNN_OFFLINE=1): {path.name} is not cached, "
                            "and nothing is downloaded.")
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    partial = Path(name)
    try:
        with open(handle, "wb") as out:
            stream(url, out, desc=path.name)
        _check(partial, sha256, md5, shown=path.name)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)   # after a failure, or an interrupt


def _check(path, sha256, md5, shown=None):
    """Delete ``path`` and raise ``DownloadError`` unless it has the expected digests."""
    for name, algorithm, wanted in (("SHA-256", "sha256", sha256), ("MD5", "md5", md5)):
        if wanted is None:
            continue
        got = file_digest(path, algorithm)
        if not got.startswith(wanted.lower()):
            path.unlink()
            raise DownloadError(f"{shown or path.name} has {name} {got}, expected {wanted}: "
                                "the download is corrupt or the file changed. It was "
                                "deleted; run again.")
