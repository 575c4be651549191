"""Downloads: once, cached, checked; offline mode never reaches for the network; a server
that goes silent or hangs up early gives a clear error in seconds and leaves no file.

The servers are local (127.0.0.1, in a thread, closed after each test): nothing here
touches the internet.
"""
import contextlib
import hashlib
import io
import socket
import tarfile
import threading
import time

import pytest
from PIL import Image

from utils import downloads as D
from utils.images import image_set


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
    photos = image_set("tiny", n_images=3, cache_dir=tmp_path / "cache")
    assert len(photos) == 3 and all(im.size == (64, 48) for _, im in photos)
    train = image_set("tiny", n_images=10, cache_dir=tmp_path / "cache", split="train")
    assert len(train) == 5 and all(im.size == (80, 60) for _, im in train)
    with pytest.raises(KeyError, match="imagenette"):
        image_set("no-such-set")


def test_imagenette_is_pinned_to_the_checksum_torchvision_pins():
    from torchvision import datasets
    archives = getattr(getattr(datasets, "Imagenette", None), "_ARCHIVES", None)
    if archives is None:
        pytest.skip("this torchvision does not list Imagenette's archives")
    url, md5 = archives["160px"]
    assert D.IMAGE_SETS["imagenette-160"]["url"] == url
    assert D.IMAGE_SETS["imagenette-160"]["md5"] == md5


# --- local servers that misbehave -----------------------------------------------------------

def _read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        block = conn.recv(4096)
        if not block:
            return False                            # a connection test (can_reach), no request
        data += block
    return True


def _headers(length):
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


def answer(body):
    """A good server: the whole file, with its Content-Length."""
    def handle(conn, stop):
        if _read_request(conn):
            conn.sendall(_headers(len(body)) + body)
    return handle


def silent(conn, stop):
    """Accepts the connection and never answers."""
    stop.wait()


def half_then_silent(conn, stop):
    """Sends the headers and half the body, then stalls."""
    if _read_request(conn):
        conn.sendall(_headers(1000) + b"x" * 500)
        stop.wait()


def half_then_hang_up(conn, stop):
    """Sends the headers and half the body, then closes the connection."""
    if _read_request(conn):
        conn.sendall(_headers(1000) + b"x" * 500)


@contextlib.contextmanager
def serve(handle):
    """``http://127.0.0.1:<port>`` answered by ``handle(conn, stop)``, one thread per
    connection; on exit every thread is released and joined, every socket closed."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    threads = []

    def run(conn):
        with conn:
            try:
                handle(conn, stop)
            except OSError:                         # the client gave up first
                pass

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threads.append(threading.Thread(target=run, args=(conn,)))
            threads[-1].start()

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for thread in threads:
            thread.join()


@pytest.fixture
def short_timeouts(monkeypatch):
    """Online, with timeouts of a second so that a silent server fails fast."""
    monkeypatch.setenv("VCNN_OFFLINE", "0")
    monkeypatch.setattr(D, "STALL_TIMEOUT", 1.0)
    monkeypatch.setattr(D, "OPEN_TIMEOUT", 2.0)


@pytest.fixture
def hanging_lookup(monkeypatch):
    """A name lookup that never answers (until the test ends)."""
    release = threading.Event()

    def lookup(*args, **kwargs):
        release.wait()
        raise socket.gaierror("lookup released by the test")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield
    release.set()


FAULTS = {"silent": silent, "half then silent": half_then_silent,
          "half then hang up": half_then_hang_up}
MESSAGES = {"silent": "no answer for 1 s", "half then silent": "no answer for 1 s",
            "half then hang up": "after 500 of 1000 bytes"}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_misbehaving_server_gives_up_quickly_and_leaves_no_file(tmp_path, short_timeouts,
                                                                  fault):
    with serve(FAULTS[fault]) as server:
        start = time.perf_counter()
        with pytest.raises(D.DownloadError, match=MESSAGES[fault]):
            D.download(f"{server}/painting.jpg", tmp_path)
        assert time.perf_counter() - start < 2.5
    assert list(tmp_path.iterdir()) == []


def test_a_hanging_name_lookup_gives_up_quickly(tmp_path, short_timeouts, hanging_lookup):
    start = time.perf_counter()
    with pytest.raises(D.DownloadError, match="no answer within 2 s"):
        D.download("https://example.org/painting.jpg", tmp_path)
    assert time.perf_counter() - start < 3
    assert list(tmp_path.iterdir()) == []


def test_image_set_gives_up_on_a_silent_server(tmp_path, short_timeouts, monkeypatch):
    with serve(half_then_silent) as server:
        monkeypatch.setitem(D.IMAGE_SETS, "tiny", {"url": f"{server}/set.tgz", "root": "set/"})
        start = time.perf_counter()
        with pytest.raises(D.DownloadError, match="no answer"):
            image_set("tiny", cache_dir=tmp_path)
        assert time.perf_counter() - start < 2.5
    assert list(tmp_path.iterdir()) == []


def test_a_good_server_gives_the_file_with_its_checksum(tmp_path, short_timeouts):
    body = make_archive(tmp_path / "source.tgz").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    with serve(answer(body)) as server:
        path = D.download(f"{server}/set.tgz", tmp_path / "cache", sha256=digest)
        assert path.read_bytes() == body
        with pytest.raises(D.DownloadError, match="SHA-256"):  # a wrong pin keeps nothing
            D.download(f"{server}/set.tgz", tmp_path / "other", sha256="0" * 64)
        assert D.download(f"{server}/set.tgz", tmp_path / "short", sha256=digest[:8]) \
            .read_bytes() == body                                    # a prefix, as torch.hub
    assert sorted(p.name for p in path.parent.iterdir()) == ["set.tgz", "set.tgz.sha256"]
    assert list((tmp_path / "other").iterdir()) == []


def test_the_arrow_goes_one_way():
    """images uses downloads (a URL, an image set); downloads knows nothing of images."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(D))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "images" not in imported and "utils.images" not in imported
