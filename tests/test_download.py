"""Downloading and extracting FreiHAND against a loopback HTTP server with faults to order."""

from __future__ import annotations

import hashlib
import io
import re
import socket
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
    Archive, ArchiveError, ChecksumError, DownloadError, download, extract, fetch_archive,
    fetch_freihand, read_record, update_record,
)
from cliphand.data.freihand import FreiHAND
from cliphand.data.synthetic import generate

TRAIN, EVAL = "FreiHAND_pub_v2.zip", "FreiHAND_pub_v2_eval.zip"
EVAL_ONLY = ("evaluation_xyz.json", "evaluation_verts.json", "evaluation_mano.json")
FAST = {"backoff": 0.001, "progress": False}


class Remote:
    """In-memory files served over HTTP on 127.0.0.1, honouring ``Range: bytes=N-``.

    Faults: ``cut_once`` names files whose next response stops halfway through the body (the
    connection then closes, or with ``stall`` hangs until the server closes), ``corrupt`` files
    served with one byte flipped, ``fail_once`` a status to answer once, and ``ignore_range``
    makes the server answer every request with the whole file (200).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.corrupt: set[str] = set()
        self.fail_once: dict[str, int] = {}
        self.ignore_range = False
        self.stall = False
        self.closing = threading.Event()
        self.requests: list[tuple[str, str | None]] = []  # (file, Range header)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.remote = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        remote: Remote = self.server.remote  # type: ignore[attr-defined]
        name, range_header = self.path.lstrip("/"), self.headers.get("Range")
        with remote.lock:
            remote.requests.append((name, range_header))
            status = remote.fail_once.pop(name, None)
            cut = name in remote.cut_once
            remote.cut_once.discard(name)
        if status is not None or name not in remote.files:
            self.send_error(status or 404)
            return
        body = remote.files[name]
        if name in remote.corrupt:
            mid = len(body) // 2
            body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if m and not remote.ignore_range:
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


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
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
    remote.files.update(archives)
    return [Archive(name, remote.url(name), len(data), "test") for name, data in archives.items()]


@pytest.mark.parametrize("stall", [False, True], ids=["closed", "timed-out"])
def test_download_resumes_after_a_cut(remote: Remote, archives: dict[str, bytes],
                                      tmp_path: Path, stall: bool) -> None:
    data = remote.files[TRAIN] = archives[TRAIN]
    remote.cut_once.add(TRAIN)
    remote.stall = stall
    path = download(remote.url(TRAIN), tmp_path / TRAIN, timeout=0.2, **FAST)
    assert dl.sha256_of(path) == _sha(data)
    assert remote.requests == [(TRAIN, None), (TRAIN, f"bytes={len(data) // 2}-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN]


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


def test_complete_part_file_and_stale_part_file(remote: Remote, tmp_path: Path) -> None:
    data = remote.files["a.bin"] = b"abc" * 1000
    part = tmp_path / "a.bin.part"
    part.write_bytes(data)  # complete: the server answers 416 to the resume
    assert download(remote.url("a.bin"), tmp_path / "a.bin", **FAST).read_bytes() == data
    part.write_bytes(data + b"junk")  # longer than the remote file: start over
    assert download(remote.url("a.bin"), tmp_path / "a.bin", **FAST).read_bytes() == data
    assert not part.exists()


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


def test_corrupted_archive_is_refused(remote: Remote, archives: dict[str, bytes],
                                      tmp_path: Path) -> None:
    (archive,) = _registry(remote, {TRAIN: archives[TRAIN]})
    sha = _sha(archives[TRAIN])
    update_record(tmp_path / dl.CHECKSUM_RECORD, TRAIN, size=len(archives[TRAIN]), sha256=sha)
    remote.corrupt.add(TRAIN)
    with pytest.raises(ChecksumError, match=rf"{TRAIN}: SHA-256 mismatch: expected {sha}, "
                                            r"got [0-9a-f]{64} .*moved aside to .*\.corrupt"):
        fetch_freihand(tmp_path, [archive], **FAST)
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == [f"{TRAIN}.corrupt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", dl.CHECKSUM_RECORD]


def test_checksum_record_written_then_enforced(remote: Remote, tmp_path: Path) -> None:
    data = remote.files["a.zip"] = b"first version" * 100
    archive = Archive("a.zip", remote.url("a.zip"), len(data), "test")
    record, folder = tmp_path / dl.CHECKSUM_RECORD, tmp_path / "archives"
    fetch_archive(archive, folder, record, **FAST)
    assert read_record(record)["a.zip"] == {"url": archive.url, "size": len(data),
                                            "sha256": _sha(data)}

    # A damaged local copy is moved aside and fetched again.
    (folder / "a.zip").write_bytes(b"X" + data[1:])
    assert fetch_archive(archive, folder, record, **FAST).read_bytes() == data
    assert (folder / "a.zip.corrupt").exists()

    # The remote file changed: refused, whether its size gives it away or only its hash.
    (folder / "a.zip").unlink()
    remote.files["a.zip"] = b"second version" * 100
    with pytest.raises(ChecksumError, match=rf"size mismatch: expected {len(data)}, got 1400 "
                                            r"\(announced by .*checksums\.json"):
        fetch_archive(archive, folder, record, **FAST)
    remote.files["a.zip"] = data
    remote.corrupt.add("a.zip")
    with pytest.raises(ChecksumError, match=f"SHA-256 mismatch: expected {_sha(data)}"):
        fetch_archive(archive, folder, record, **FAST)
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
    data = tmp_path / "freihand"

    # Before the evaluation archive: the evaluation split has images but no joints or meshes.
    root = fetch_freihand(data, [train_archive], **FAST)
    evaluation = FreiHAND(root, "evaluation")
    assert evaluation.xyz is None and evaluation[0].xyz is None and not evaluation.has_masks

    root = fetch_freihand(data, [train_archive, eval_archive], **FAST)
    assert root == data
    record = read_record(data / dl.CHECKSUM_RECORD)
    for name, archive in archives.items():
        assert record[name]["sha256"] == _sha(archive) and record[name]["extracted"] is True
    for split in ("training", "evaluation"):
        got, want = FreiHAND(root, split), FreiHAND(source, split)
        assert len(got) == len(want) and got.has_masks
        np.testing.assert_array_equal(got.xyz, want.xyz)
        np.testing.assert_array_equal(got.verts, want.verts)
        np.testing.assert_array_equal(got[len(got) - 1].image, want[len(want) - 1].image)
    assert not [p for p in data.iterdir() if p.name.startswith(".")]

    requests = len(remote.requests)
    fetch_freihand(data, [train_archive, eval_archive], **FAST)
    assert len(remote.requests) == requests  # everything already in place


def test_command_line(remote: Remote, archives: dict[str, bytes], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    registry = _registry(remote, archives)
    monkeypatch.setattr(dl, "FREIHAND_ARCHIVES", tuple(registry))
    monkeypatch.setattr(dl, "ARCHIVES", {a.name: a for a in registry})
    dl.main(["--out", str(tmp_path / "fh"), "--archive", EVAL, "--delete-archives",
             "--no-progress"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "fh")
    assert (tmp_path / "fh" / "evaluation_xyz.json").exists()
    assert not list((tmp_path / "fh" / "archives").iterdir())
