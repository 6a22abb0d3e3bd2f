"""Downloading and extracting FreiHAND against a loopback HTTP(S) server with faults to order."""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import json
import re
import shutil
import socket
import ssl
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cliphand.data import download as dl
from cliphand.data.download import (
    Archive,
    ArchiveError,
    ChecksumError,
    DownloadError,
    ExtractLimits,
    download,
    extract,
    fetch_archive,
    fetch_freihand,
    read_record,
    update_record,
)
from cliphand.data.freihand import FreiHAND
from cliphand.data.synthetic import generate

TRAIN, EVAL = "FreiHAND_pub_v2.zip", "FreiHAND_pub_v2_eval.zip"
EVAL_ONLY = ("evaluation_xyz.json", "evaluation_verts.json", "evaluation_mano.json")
FAST = {"backoff": 0.001, "progress": False}


class Remote:
    """In-memory files served over HTTP (or HTTPS with ``tls``) on 127.0.0.1, honouring
    ``Range: bytes=N-`` and ``If-Range`` against the ETag it sends (a hash of the body).

    Faults: ``cut_once`` names files whose next response stops halfway through the body (the
    connection then closes, or with ``stall`` hangs until the server closes), ``no_length`` files
    served without Content-Length (so a cut looks like the end), ``corrupt`` files served with one
    byte flipped, ``fail_once`` a status to answer once, ``redirects`` a Location to send instead,
    ``hold_once`` files whose next response waits for ``release`` (``held`` says it is waiting);
    ``ignore_range`` makes the server answer every request with the whole file (200),
    ``ignore_if_range`` resume whatever the If-Range, and ``validators = False`` send no ETag.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.no_length: set[str] = set()
        self.corrupt: set[str] = set()
        self.fail_once: dict[str, int] = {}
        self.redirects: dict[str, str] = {}
        self.hold_once: set[str] = set()
        self.held, self.release = threading.Event(), threading.Event()
        self.ignore_range = self.ignore_if_range = False
        self.validators = True
        self.stall = False
        self.closing = threading.Event()
        self.requests: list[tuple[str, str | None]] = []  # (file, Range header)
        self.if_range: list[str | None] = []  # the If-Range header of each request
        self.connections = 0  # accepted, TLS handshake or not
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.remote = self
        self.scheme = "https" if tls else "http"
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Server(ThreadingHTTPServer):
    remote: Remote

    def get_request(self) -> tuple[socket.socket, object]:
        self.remote.connections += 1  # counted before the TLS handshake, which may fail
        return super().get_request()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        remote: Remote = self.server.remote  # type: ignore[attr-defined]
        name, range_header = self.path.lstrip("/"), self.headers.get("Range")
        with remote.lock:
            remote.requests.append((name, range_header))
            remote.if_range.append(self.headers.get("If-Range"))
            status = remote.fail_once.pop(name, None)
            cut = name in remote.cut_once
            remote.cut_once.discard(name)
            hold = name in remote.hold_once
            remote.hold_once.discard(name)
        if hold:
            remote.held.set()
            remote.release.wait(10)
        if name in remote.redirects:
            self.send_response(302)
            self.send_header("Location", remote.redirects[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if status is not None or name not in remote.files:
            self.send_error(status or 404)
            return
        body = remote.files[name]
        if name in remote.corrupt:
            mid = len(body) // 2
            body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
        etag = f'"{_sha(body)[:16]}"' if remote.validators else None
        if_range = self.headers.get("If-Range")
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if m and not remote.ignore_range and (if_range in (None, etag) or remote.ignore_if_range):
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        if etag:
            self.send_header("ETag", etag)
        if name not in remote.no_length:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        # HTTP/1.0: the connection closes after the response, so a short write is a cut.
        self.wfile.write(payload[: len(payload) // 2] if cut else payload)
        if cut and remote.stall:
            self.wfile.flush()
            remote.closing.wait(10)

    def log_message(self, *args: object) -> None:
        pass


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    yield server
    server.close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), trusted by nobody."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_remote(certificate: tuple[Path, Path]) -> Iterator[Remote]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = Remote(tls=context)
    yield server
    server.close()


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated set in FreiHAND's layout: the content of the archives."""
    root = tmp_path_factory.mktemp("freihand_source")
    generate(root, n_train=2, n_eval=2, image_size=64, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def archives(source: Path) -> dict[str, bytes]:
    """FreiHAND's two archives built from ``source``, each wrapped in a top-level folder; the
    evaluation masks travel with the evaluation annotations."""
    train: dict[str, bytes] = {}
    evaluation: dict[str, bytes] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        to_eval = rel in EVAL_ONLY or rel.startswith("evaluation/mask/")
        (evaluation if to_eval else train)[rel] = path.read_bytes()
    return {
        TRAIN: _zip({f"FreiHAND_pub_v2/{k}": v for k, v in train.items()}),
        EVAL: _zip({f"FreiHAND_pub_v2_eval/{k}": v for k, v in evaluation.items()}),
    }


def _registry(remote: Remote, archives: dict[str, bytes]) -> list[Archive]:
    """The archives served by ``remote``, with FreiHAND's required members and a minimum size
    well below the test archives' own."""
    remote.files.update(archives)
    return [Archive(name, remote.url(name), len(data), "test", dl.ARCHIVES[name].required, 1000)
            for name, data in archives.items()]


@pytest.mark.parametrize("stall", [False, True], ids=["closed", "timed-out"])
def test_download_resumes_after_a_cut(remote: Remote, archives: dict[str, bytes],
                                      tmp_path: Path, stall: bool) -> None:
    data = remote.files[TRAIN] = archives[TRAIN]
    remote.cut_once.add(TRAIN)
    remote.stall = stall
    path = download(remote.url(TRAIN), tmp_path / TRAIN, timeout=0.2, **FAST)
    assert dl.sha256_of(path) == _sha(data)
    assert remote.requests == [(TRAIN, None), (TRAIN, f"bytes={len(data) // 2}-")]
    assert remote.if_range == [None, f'"{_sha(data)[:16]}"']
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN]


@pytest.mark.parametrize("server", ["honours", "ignores"])
def test_resume_of_a_file_changed_upstream_restarts(remote: Remote, tmp_path: Path,
                                                    server: str) -> None:
    """The part holds the first half of version 1; version 2 (same size) must not be spliced
    onto it, whether the server honours If-Range (200) or ignores it (206 with another ETag)."""
    old, new = bytes(range(256)) * 100, bytes(reversed(range(256))) * 100
    remote.files["a.bin"] = old
    remote.cut_once.add("a.bin")
    with pytest.raises(DownloadError, match="after 1 failed attempts"):
        download(remote.url("a.bin"), tmp_path / "a.bin", retries=0, **FAST)
    remote.files["a.bin"] = new
    remote.ignore_if_range = server == "ignores"
    assert download(remote.url("a.bin"), tmp_path / "a.bin", **FAST).read_bytes() == new
    assert remote.if_range[1] == f'"{_sha(old)[:16]}"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_server_ignoring_range_restarts_cleanly(remote: Remote, tmp_path: Path) -> None:
    data = remote.files["a.bin"] = bytes(range(256)) * 1000
    remote.cut_once.add("a.bin")
    remote.ignore_range = True
    path = download(remote.url("a.bin"), tmp_path / "a.bin", **FAST)
    assert path.read_bytes() == data
    assert remote.requests[1][1] == f"bytes={len(data) // 2}-"


def test_server_error_is_retried(remote: Remote, tmp_path: Path) -> None:
    remote.files["a.bin"] = b"x" * 1000
    remote.fail_once["a.bin"] = 503
    assert download(remote.url("a.bin"), tmp_path / "a.bin", **FAST).read_bytes() == b"x" * 1000
    assert len(remote.requests) == 2


def test_complete_stale_and_unvalidated_part_files(remote: Remote, tmp_path: Path) -> None:
    data = remote.files["a.bin"] = b"abc" * 1000
    url, part = remote.url("a.bin"), tmp_path / "a.bin.part"
    validator = dl._validator_path(part)
    for stored in (data, data + b"junk"):  # complete (416 to the resume), longer: start over
        part.write_bytes(stored)
        validator.write_text(json.dumps({"url": url, "validator": f'"{_sha(data)[:16]}"'}))
        assert download(url, tmp_path / "a.bin", **FAST).read_bytes() == data
        assert not part.exists() and not validator.exists()
    # Without a validator, nothing tells which version the bytes are of: start over.
    part.write_bytes(data[:100])
    assert download(url, tmp_path / "a.bin", **FAST).read_bytes() == data
    assert [r for _, r in remote.requests] == ["bytes=3000-", "bytes=3004-", None, None]


def test_404_fails_at_once(remote: Remote, tmp_path: Path) -> None:
    url = remote.url("missing.zip")
    started = time.monotonic()
    with pytest.raises(DownloadError, match=re.escape(url) + ": HTTP 404"):
        download(url, tmp_path / "missing.zip", retries=5, backoff=10.0, progress=False)
    assert time.monotonic() - started < 5
    assert len(remote.requests) == 1


def test_dead_server_fails_after_retries(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/FreiHAND_pub_v2.zip"
    with pytest.raises(DownloadError, match=re.escape(url) + " after 3 failed attempts; "
                                            "last error: ConnectionRefusedError"):
        download(url, tmp_path / TRAIN, retries=2, **FAST)
    assert not (tmp_path / TRAIN).exists()


def test_certificate_error_is_not_retried(tls_remote: Remote, tmp_path: Path) -> None:
    tls_remote.files["a.bin"] = b"x" * 1000
    url = tls_remote.url("a.bin")
    with pytest.raises(DownloadError, match=re.escape(url) + r": TLS certificate rejected "
                                            r"\(self.signed certificate\); not retrying"):
        download(url, tmp_path / "a.bin", retries=3, **FAST)
    assert tls_remote.connections == 1 and tls_remote.requests == []


def test_https_to_http_redirect_is_refused(tls_remote: Remote, remote: Remote, tmp_path: Path,
                                           certificate: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the loopback server
    data = tls_remote.files["a.bin"] = remote.files["a.bin"] = b"x" * 1000
    tls_remote.redirects["moved.bin"] = tls_remote.url("a.bin")  # https -> https: followed
    assert download(tls_remote.url("moved.bin"), tmp_path / "a.bin", **FAST).read_bytes() == data
    url, target = tls_remote.url("down.bin"), remote.url("a.bin")
    tls_remote.redirects["down.bin"] = target
    with pytest.raises(DownloadError, match=re.escape(f"{url}: refusing the redirect to {target} "
                                                      "(https downgraded to http)")):
        download(url, tmp_path / "b.bin", retries=3, **FAST)
    assert remote.requests == [] and tls_remote.requests[-1] == ("down.bin", None)
    assert len(tls_remote.requests) == 3  # moved, a, down: not retried


UNTRUSTED = {  # what the error says, as a regex
    "html": r"an HTML page, not a zip",
    "cut-without-length": r"not a readable zip archive: File is not a zip file \(cut short\?\)",
    "wrong-archive": rf"not {TRAIN}: it lacks training/rgb/, training_xyz\.json",
    "too-small": rf"only [0-9]+ bytes, but {TRAIN} has at least 1000000",
}


@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_untrustworthy_body_is_neither_recorded_nor_extracted(
        remote: Remote, archives: dict[str, bytes], tmp_path: Path, case: str) -> None:
    (archive,) = _registry(remote, {TRAIN: archives[TRAIN]})
    if case == "html":
        remote.files[TRAIN] = b"<!DOCTYPE html><html><body>Service unavailable</body></html>"
    elif case == "cut-without-length":
        remote.cut_once.add(TRAIN)
        remote.no_length.add(TRAIN)
    elif case == "wrong-archive":
        remote.files[TRAIN] = archives[EVAL]
    else:
        archive = Archive(TRAIN, archive.url, 1, "test", archive.required, 1_000_000)
    root, downloads = tmp_path / "root", tmp_path / "downloads"
    with pytest.raises(ArchiveError, match=re.escape(archive.url) + ": " + UNTRUSTED[case] +
                       r".*; moved aside to .*downloads/FreiHAND_pub_v2\.zip\.corrupt$"):
        fetch_freihand(root, [archive], downloads=downloads, **FAST)
    assert not (downloads / dl.CHECKSUM_RECORD).exists()
    assert _tree(root) == []
    assert sorted(p.name for p in downloads.iterdir()) == [dl.LOCK_FILE, f"{TRAIN}.corrupt"]


def test_corrupted_archive_is_refused(remote: Remote, archives: dict[str, bytes],
                                      tmp_path: Path) -> None:
    (archive,) = _registry(remote, {TRAIN: archives[TRAIN]})
    sha = _sha(archives[TRAIN])
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    update_record(downloads / dl.CHECKSUM_RECORD, TRAIN, size=len(archives[TRAIN]), sha256=sha)
    remote.corrupt.add(TRAIN)
    with pytest.raises(ChecksumError, match=rf"{TRAIN}: SHA-256 mismatch: expected {sha}, "
                                            r"got [0-9a-f]{64} .*moved aside to .*\.corrupt"):
        fetch_freihand(tmp_path / "root", [archive], downloads=downloads, **FAST)
    assert sorted(p.name for p in downloads.iterdir()) == sorted(
        [dl.LOCK_FILE, dl.CHECKSUM_RECORD, f"{TRAIN}.corrupt"])
    assert _tree(tmp_path / "root") == []


def test_checksum_record_written_then_enforced(remote: Remote, tmp_path: Path) -> None:
    payload = np.random.default_rng(0).bytes(2000)
    data = remote.files["a.zip"] = _zip({"a.bin": payload})
    archive = Archive("a.zip", remote.url("a.zip"), len(data), "test", ("a.bin",))
    folder = tmp_path / "downloads"
    record = folder / dl.CHECKSUM_RECORD
    fetch_archive(archive, folder, **FAST)
    assert read_record(record)["a.zip"] == {"url": archive.url, "size": len(data),
                                            "sha256": _sha(data)}

    # A damaged local copy is moved aside and fetched again.
    (folder / "a.zip").write_bytes(b"X" + data[1:])
    assert fetch_archive(archive, folder, **FAST).read_bytes() == data
    assert (folder / "a.zip.corrupt").exists()

    # The remote file changed: refused, whether its size gives it away or only its hash.
    (folder / "a.zip").unlink()
    remote.files["a.zip"] = _zip({"a.bin": payload + b"more"})
    with pytest.raises(ChecksumError, match=rf"size mismatch: expected {len(data)}, got "
                                            r"[0-9]+ \(announced by .*checksums\.json"):
        fetch_archive(archive, folder, **FAST)
    remote.files["a.zip"] = data
    remote.corrupt.add("a.zip")
    with pytest.raises(ChecksumError, match=f"SHA-256 mismatch: expected {_sha(data)}"):
        fetch_archive(archive, folder, **FAST)
    assert not (folder / "a.zip").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "data/../../evil.txt"])
def test_zip_slip_is_refused(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "slip.zip"
    archive.write_bytes(_zip({"ok.txt": b"ok", member: b"evil"}))
    dest = tmp_path / "out" / "root"
    with pytest.raises(ArchiveError, match=rf"slip\.zip: refusing unsafe member path '{member}'"):
        extract(archive, dest)
    assert not list((tmp_path / "out").rglob("*.txt"))
    assert not (tmp_path / "evil.txt").exists()


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        link = zipfile.ZipInfo("training")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
    return buffer.getvalue()


UNSAFE = {  # archive, limits, error
    "bomb-total": (lambda: _zip({"bomb.bin": bytes(4 << 20)}), ExtractLimits(max_unpacked=1 << 20),
                   r"unpacks to 4194304 bytes, more than the limit of 1048576"),
    "bomb-ratio": (lambda: _zip({"bomb.bin": bytes(4 << 20)}), ExtractLimits(),
                   r"member bomb\.bin expands [0-9]+-fold, more than the limit of 100 \(a zip"),
    "members": (lambda: _zip({f"{i}.txt": b"x" for i in range(11)}), ExtractLimits(max_members=10),
                r"11 members, more than the limit of 10"),
    "symlink": (_symlink_zip, ExtractLimits(), r"refusing symbolic link member 'training'"),
    "file-and-folder": (lambda: _zip({"a": b"file", "a/b": b"file below"}), ExtractLimits(),
                        r"a is both a file and a folder"),
    "record": (lambda: _zip({dl.EXTRACTED_RECORD: b"{}", "ok.txt": b"ok"}), ExtractLimits(),
               r"member \.cliphand-extracted\.json would overwrite the record"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_is_refused_before_writing(tmp_path: Path, case: str) -> None:
    make, limits, error = UNSAFE[case]
    archive = tmp_path / "unsafe.zip"
    archive.write_bytes(make())
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ArchiveError, match=r"unsafe\.zip: " + error):
        extract(archive, dest, limits=limits)
    assert _tree(dest) == []


def test_file_folder_clash_leaves_no_partial_tree(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    (dest / "evaluation").mkdir(parents=True)
    (dest / "training").write_text("a file where the archive has a folder")
    before = _tree(dest)
    archive = tmp_path / "clash.zip"
    archive.write_bytes(_zip({"a_first.json": b"[]", "evaluation/rgb/00000000.jpg": b"img",
                              "training/rgb/00000000.jpg": b"img", "zz_last.json": b"[]"}))
    with pytest.raises(ArchiveError, match=r"clash\.zip: .*root/training is a file, the archive "
                                           r"has a folder there; nothing was extracted"):
        extract(archive, dest)
    assert _tree(dest) == before


def test_corrupt_zip_names_the_archive_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not a zip")
    dest = tmp_path / "root"
    with pytest.raises(ArchiveError, match=r"broken\.zip: not a readable zip archive"):
        extract(archive, dest)

    good = np.random.default_rng(0).bytes(50_000)
    data = bytearray(_zip({"a.json": b"[1, 2]", "b.bin": good}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("b.bin")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # damage b.bin's compressed bytes
    archive.write_bytes(bytes(data))
    dest.mkdir(exist_ok=True)
    (dest / "kept.txt").write_text("already here")
    with pytest.raises(ArchiveError, match=r"broken\.zip: corrupt member b\.bin"):
        extract(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["kept.txt"]


def test_extract_strips_a_wrapper_and_merges(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    (dest / "evaluation" / "rgb").mkdir(parents=True)
    (dest / "evaluation" / "rgb" / "00000000.jpg").write_bytes(b"img")
    wrapped = tmp_path / "wrapped.zip"
    wrapped.write_bytes(_zip({"Wrap/": b"", "Wrap/evaluation_xyz.json": b"[]",
                              "Wrap/evaluation/mask/00000000.jpg": b"mask",
                              "__MACOSX/Wrap/._evaluation_xyz.json": b"fork"}))
    split_only = tmp_path / "split_only.zip"
    split_only.write_bytes(_zip({"training/rgb/00000000.jpg": b"img"}))
    extract(wrapped, dest)
    extract(split_only, dest)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["evaluation/mask/00000000.jpg", "evaluation/rgb/00000000.jpg",
                     "evaluation_xyz.json", "training/rgb/00000000.jpg"]


def test_fetch_freihand_end_to_end(remote: Remote, archives: dict[str, bytes], source: Path,
                                   tmp_path: Path) -> None:
    train_archive, eval_archive = _registry(remote, archives)
    remote.cut_once.add(TRAIN)
    data, downloads = tmp_path / "freihand", tmp_path / "downloads"
    options = {"downloads": downloads, **FAST}

    # Before the evaluation archive: the evaluation split has images but no joints or meshes.
    root = fetch_freihand(data, [train_archive], **options)
    evaluation = FreiHAND(root, "evaluation")
    assert evaluation.xyz is None and evaluation[0].xyz is None and not evaluation.has_masks

    root = fetch_freihand(data, [train_archive, eval_archive], **options)
    assert root == data
    record = read_record(downloads / dl.CHECKSUM_RECORD)
    extracted = read_record(data / dl.EXTRACTED_RECORD)
    for name, archive in archives.items():
        assert record[name]["sha256"] == extracted[name]["sha256"] == _sha(archive)
    for split in ("training", "evaluation"):
        got, want = FreiHAND(root, split), FreiHAND(source, split)
        assert len(got) == len(want) and got.has_masks
        np.testing.assert_array_equal(got.xyz, want.xyz)
        np.testing.assert_array_equal(got.verts, want.verts)
        np.testing.assert_array_equal(got[len(got) - 1].image, want[len(want) - 1].image)
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == [dl.EXTRACTED_RECORD]
    assert sorted(p.name for p in downloads.iterdir()) == sorted(
        [dl.LOCK_FILE, dl.CHECKSUM_RECORD, TRAIN, EVAL])

    requests = len(remote.requests)
    fetch_freihand(data, [train_archive, eval_archive], **options)
    assert len(remote.requests) == requests  # everything already in place

    # `dvc repro` wipes the root: the kept, verified archives are extracted again, not fetched.
    shutil.rmtree(data)
    fetch_freihand(data, [train_archive, eval_archive], keep_archives=False, **options)
    assert len(remote.requests) == requests
    assert len(FreiHAND(data, "training")) == len(FreiHAND(source, "training"))
    # Wiped again, archives gone: fetched again and held to the recorded checksums.
    shutil.rmtree(data)
    remote.corrupt.add(EVAL)
    with pytest.raises(ChecksumError, match=f"{EVAL}: SHA-256 mismatch"):
        fetch_freihand(data, [eval_archive], **options)


def test_downloads_folder_must_lie_outside_the_root(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="the downloads folder must lie outside the dataset"):
        fetch_freihand(tmp_path / "raw", [], downloads=tmp_path / "raw" / "downloads", **FAST)
    assert not (tmp_path / "raw").exists()


def test_a_second_run_fails_while_one_is_running(remote: Remote, archives: dict[str, bytes],
                                                 tmp_path: Path) -> None:
    (archive,) = _registry(remote, {EVAL: archives[EVAL]})
    remote.hold_once.add(EVAL)
    downloads = tmp_path / "downloads"
    first: list[Path] = []
    thread = threading.Thread(target=lambda: first.append(
        fetch_freihand(tmp_path / "a", [archive], downloads=downloads, **FAST)))
    thread.start()
    try:
        assert remote.held.wait(10)
        with pytest.raises(DownloadError, match=r"downloads/\.lock: another download \(pid \d+\) "
                                                r"is using .*downloads; wait for it to finish"):
            fetch_freihand(tmp_path / "b", [archive], downloads=downloads, **FAST)
    finally:
        remote.release.set()
        thread.join(10)
    assert first == [tmp_path / "a"] and len(remote.requests) == 1
    assert (tmp_path / "a" / "evaluation_xyz.json").exists()


def test_command_line(remote: Remote, archives: dict[str, bytes], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    registry = _registry(remote, archives)
    monkeypatch.setattr(dl, "FREIHAND_ARCHIVES", tuple(registry))
    monkeypatch.setattr(dl, "ARCHIVES", {a.name: a for a in registry})
    dl.main(["--out", str(tmp_path / "fh"), "--downloads", str(tmp_path / "dl"),
             "--archive", EVAL, "--delete-archives", "--no-progress"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "fh")
    assert (tmp_path / "fh" / "evaluation_xyz.json").exists()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [dl.LOCK_FILE,
                                                                   dl.CHECKSUM_RECORD]


@pytest.mark.parametrize("debug", [None, "--debug", "CLIPHAND_DEBUG=1"])
def test_command_line_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        debug: str | None) -> None:
    monkeypatch.chdir(tmp_path)  # the default downloads folder, data/downloads, lands here
    (tmp_path / "taken").write_text("a file where the dataset root should go")
    argv = ["--out", "taken/fh", "--no-progress"]
    if debug == "--debug":
        argv.append(debug)
    elif debug:
        monkeypatch.setenv("CLIPHAND_DEBUG", "1")
    if debug:
        with pytest.raises(NotADirectoryError):
            dl.main(argv)
        return
    with pytest.raises(SystemExit) as exit_:
        dl.main(argv)
    assert exit_.value.code == "error: [Errno 20] Not a directory: 'taken/fh'"
