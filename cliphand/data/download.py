"""Fetching FreiHAND: resumable, verified downloads and safe extraction of its archives.

FreiHAND publishes no checksums, so the first download of each archive records its size and
SHA-256 in ``<data_dir>/checksums.json`` (trust on first use); every later download or reuse of
an archive is checked against that record. A file becomes ``dest`` only once verified: bytes
stream into ``dest.zip.part`` (resumed with HTTP Range requests after an interruption) and a
file that fails verification is moved aside to ``dest.zip.corrupt``.

Command line: ``python -m cliphand.data.download --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from cliphand.data.layout import SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """One archive of the dataset: its file name (the key in the checksum record) and URL."""

    name: str
    url: str
    approx_size: int  # bytes, as announced by the dataset page; used for the disk-space check
    contents: str


FREIHAND_URL = "https://lmb.informatik.uni-freiburg.de/data/freihand"

# The two archives of FreiHAND v2. The second unpacks into its own folder, which extraction strips
# so that both merge into one dataset root.
FREIHAND_ARCHIVES: tuple[Archive, ...] = (
    Archive(
        "FreiHAND_pub_v2.zip",
        f"{FREIHAND_URL}/FreiHAND_pub_v2.zip",
        3_700_000_000,
        "training/rgb, training/mask, training_{xyz,verts,K,mano,scale}.json, "
        "evaluation/rgb, evaluation_{K,scale}.json",
    ),
    Archive(
        "FreiHAND_pub_v2_eval.zip",
        f"{FREIHAND_URL}/FreiHAND_pub_v2_eval.zip",
        700_000_000,
        "evaluation_{xyz,verts,mano}.json and the evaluation masks",
    ),
)
ARCHIVES: dict[str, Archive] = {a.name: a for a in FREIHAND_ARCHIVES}

CHECKSUM_RECORD = "checksums.json"
USER_AGENT = "cliphand-download/0.1 (+python urllib)"


class DownloadError(RuntimeError):
    """A file could not be downloaded, verified or extracted."""


class ChecksumError(DownloadError):
    """A file's size or SHA-256 (``what``) differs from the expected value."""

    def __init__(self, name: str, what: str, expected: str | int, actual: str | int | None,
                 detail: str = "") -> None:
        super().__init__(f"{name}: {what} mismatch: expected {expected}, got {actual}{detail}")
        self.name, self.what, self.expected, self.actual, self.detail = (
            name, what, expected, actual, detail)


class ArchiveError(DownloadError):
    """A zip archive is corrupt or unsafe to extract."""


class _Interrupted(Exception):
    """A transfer stopped before its end; the retry loop resumes it."""


# Failures worth another attempt: the network or the server, not the local disk.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
              ssl.SSLError, _Interrupted)


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected_size: int | None = None, expected_sha256: str | None = None,
           *, name: str | None = None) -> None:
    """Raise ChecksumError (naming the file ``name``) unless ``path`` has the expected size and
    SHA-256, each checked if given."""
    path = Path(path)
    name = name or path.name
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ChecksumError(name, "size", expected_size, size)
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256.lower():
            raise ChecksumError(name, "SHA-256", expected_sha256, actual)


def _quarantine(path: Path, dest: Path) -> Path:
    """Move a file that failed verification to ``dest.name + '.corrupt'``, never to ``dest``."""
    bad = dest.with_name(dest.name + ".corrupt")
    os.replace(path, bad)
    return bad


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/total`` or ``bytes */total``."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start, total = m.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _transfer(url: str, part: Path, expected_size: int | None, timeout: float, chunk_size: int,
              progress: bool, label: str) -> None:
    """One attempt: fetch what ``part`` still lacks, appending to it, or restart from zero."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have >= expected_size:
        if have == expected_size:
            return  # complete already; verification decides whether it is right
        part.unlink()  # longer than the file can be: it belongs to something else
        have = 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            _, total = _parse_content_range(e.headers.get("Content-Range"))
            e.close()
            if total == have:
                return  # nothing beyond what we hold
            part.unlink()
            raise _Interrupted(f"server refused to resume at byte {have} "
                               f"(remote size {total}); restarting") from None
        raise
    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Interrupted(f"server resumed at byte {start}, asked for {have}; restarting")
            mode = "ab"
        else:  # 200: the whole body, even if we asked for a range
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            raise ChecksumError(label, "size", expected_size, total, f" (announced by {url})")
        received = 0
        with open(part, mode) as f, tqdm(total=total, initial=have, desc=label, unit="B",
                                         unit_scale=True, unit_divisor=1024,
                                         disable=not progress, leave=False) as bar:
            # read1 returns what has arrived, so a timeout loses no bytes already received.
            while chunk := response.read1(chunk_size):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns b"" at a premature end of the body instead of raising.
    if total is not None and have + received < total:
        raise _Interrupted(f"connection closed after {have + received} of {total} bytes")


def _describe(error: BaseException) -> str:
    """The cause of a network error, unwrapped from urllib's URLError."""
    if isinstance(error, _Interrupted):
        return str(error)
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
        if isinstance(reason, BaseException):
            return f"{type(reason).__name__}: {reason}"
        return str(reason)
    return f"{type(error).__name__}: {error}"


def download(url: str, dest: Path, *, expected_size: int | None = None,
             expected_sha256: str | None = None, retries: int = 5, backoff: float = 1.0,
             timeout: float = 60.0, chunk_size: int = 1 << 20, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming after interruptions, and verify it.

    Bytes go to ``dest.part``; an interrupted transfer is resumed with a Range request (a server
    that ignores it and answers 200 restarts the file). Network errors, timeouts and HTTP 5xx are
    retried up to ``retries`` times in a row with exponential backoff (``backoff * 2**k``
    seconds); an attempt that made progress resets the count. Other HTTP errors (404) fail at
    once. The finished file must match ``expected_size`` and ``expected_sha256`` (when given) or
    it is moved to ``dest.corrupt`` and ChecksumError is raised; only then is it renamed to
    ``dest``. An existing ``dest`` that matches the given expected values is returned as is.
    """
    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (expected_size is not None or expected_sha256 is not None):
        try:
            verify(dest, expected_size, expected_sha256)
            return dest
        except ChecksumError as e:
            log.warning("%s; moved aside to %s, downloading it again", e, _quarantine(dest, dest))
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, expected_size, timeout, chunk_size, progress, dest.name)
            break
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            cause: BaseException = e
        except ChecksumError:
            part.unlink(missing_ok=True)  # the remote file is not the one expected
            raise
        except _TRANSIENT as e:
            cause = e
        if part.exists() and part.stat().st_size > before:
            failures = 0
        failures += 1
        if failures > retries:
            raise DownloadError(f"could not download {url} after {failures} failed attempts; "
                                f"last error: {_describe(cause)}") from cause
        delay = backoff * 2 ** (failures - 1)
        log.warning("%s: %s; retrying in %.1f s", dest.name, _describe(cause), delay)
        time.sleep(delay)
    try:
        verify(part, expected_size, expected_sha256, name=dest.name)
    except ChecksumError as e:
        bad = _quarantine(part, dest)
        raise ChecksumError(e.name, e.what, e.expected, e.actual,
                            f" (downloaded from {url}; moved aside to {bad})") from None
    os.replace(part, dest)
    return dest


def read_record(path: Path) -> dict[str, dict]:
    """The checksum record (archive name -> {url, size, sha256, extracted}); {} if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DownloadError(f"{path}: unreadable checksum record: {e}") from None
    if not isinstance(record, dict):
        raise DownloadError(f"{path}: checksum record is not a JSON object")
    return record


def update_record(path: Path, name: str, **fields: object) -> None:
    """Set fields of one archive's entry in the checksum record, atomically."""
    path = Path(path)
    record = read_record(path)
    record.setdefault(name, {}).update(fields)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_archive(archive: Archive, archive_dir: Path, record_path: Path, **download_options
                  ) -> Path:
    """Download (or reuse) one archive, verified against the checksum record.

    Without a record entry, the archive's size and SHA-256 are recorded (trust on first use; this
    also adopts an archive fetched by hand). An existing archive that no longer matches its
    record is moved aside and downloaded again.
    ``download_options`` go to :func:`download`.
    """
    dest = Path(archive_dir) / archive.name
    known = read_record(record_path).get(archive.name, {})
    size, sha = known.get("size"), known.get("sha256")
    if dest.exists() and sha is not None:
        try:
            verify(dest, size, sha)
        except ChecksumError as e:
            log.warning("%s; moved aside to %s, downloading it again", e, _quarantine(dest, dest))
    if not dest.exists():
        try:
            download(archive.url, dest, expected_size=size, expected_sha256=sha,
                     **download_options)
        except ChecksumError as e:
            raise ChecksumError(e.name, e.what, e.expected, e.actual,
                                f"{e.detail}; expected values from {record_path} (delete its "
                                f"{archive.name!r} entry if the archive changed upstream)"
                                ) from None
    if sha is None:
        update_record(record_path, archive.name, url=archive.url, size=dest.stat().st_size,
                      sha256=sha256_of(dest))
    return dest


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Path components of a zip member, refusing any that would land outside the destination."""
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or ".." in parts or (parts and ":" in parts[0]):
        raise ArchiveError(f"{archive}: refusing unsafe member path {name!r} "
                           "(it points outside the destination)")
    return parts


def _wrapper(members: list[tuple[tuple[str, ...], bool]]) -> str | None:
    """The single top-level folder wrapping every member, unless it is a split's own folder."""
    tops = {parts[0] for parts, _ in members if parts}
    if len(tops) != 1:
        return None
    (top,) = tops
    if top in SPLITS or any(len(parts) == 1 and not is_dir for parts, is_dir in members):
        return None
    return top


def _merge(src: Path, dst: Path, archive: Path) -> None:
    """Move the tree ``src`` into ``dst`` by renames, merging into folders that already exist."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            _merge(entry, target, archive)
        elif target.exists() and entry.is_dir() != target.is_dir():
            raise ArchiveError(f"{archive}: {entry.name} would replace {target}, which is a "
                               f"{'folder' if target.is_dir() else 'file'}")
        else:
            os.replace(entry, target)


def extract(archive: Path, dest_dir: Path) -> Path:
    """Extract a zip archive into ``dest_dir`` and return ``dest_dir``.

    Members that would land outside ``dest_dir`` (absolute paths, ``..``) make it refuse the
    whole archive. A single top-level folder wrapping everything (other than ``training/`` or
    ``evaluation/``) is stripped, so the files land at the dataset root. Everything is first
    extracted into a hidden temporary folder inside ``dest_dir`` and then renamed into place, so
    a failed or interrupted extraction leaves no half-written files among the dataset's.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArchiveError(f"{archive}: not a readable zip archive: {e}") from None
    dest_dir.mkdir(parents=True, exist_ok=True)
    prefix = f".extract-{archive.name}-"
    for stale in dest_dir.glob(prefix + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    with zf:
        # macOS archivers add resource forks under __MACOSX/; they are no part of the dataset.
        infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
        members = [(_member_parts(archive, info.filename), info.is_dir()) for info in infos]
        strip = 1 if _wrapper(members) else 0
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest_dir))
        try:
            for info, (parts, is_dir) in zip(infos, members, strict=True):
                if len(parts) <= strip:
                    continue
                target = tmp.joinpath(*parts[strip:])
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                    raise ArchiveError(f"{archive}: corrupt member {info.filename}: {e}") from None
            _merge(tmp, dest_dir, archive)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def _check_disk_space(data_dir: Path, archive_dir: Path, pending: Sequence[Archive]) -> None:
    """Fail before downloading when the disk clearly cannot hold the archives and their contents."""
    need = sum(a.approx_size * (1 if (archive_dir / a.name).exists() else 2) for a in pending)
    free = shutil.disk_usage(data_dir).free
    if free < need:
        raise DownloadError(f"not enough disk space in {data_dir}: about {need / 1e9:.1f} GB "
                            f"needed, {free / 1e9:.1f} GB free")


def fetch_freihand(data_dir: Path, archives: Sequence[Archive] = FREIHAND_ARCHIVES, *,
                   archive_dir: Path | None = None, keep_archives: bool = True, retries: int = 5,
                   backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download, verify and extract FreiHAND into ``data_dir``; return the dataset root.

    Idempotent: an archive already extracted (as noted in ``data_dir/checksums.json``) is skipped,
    one already downloaded is re-verified instead of fetched. Archives are kept in
    ``archive_dir`` (default ``data_dir/archives``) unless ``keep_archives`` is false.
    """
    data_dir = Path(data_dir)
    archive_dir = Path(archive_dir) if archive_dir is not None else data_dir / "archives"
    data_dir.mkdir(parents=True, exist_ok=True)
    record_path = data_dir / CHECKSUM_RECORD
    record = read_record(record_path)
    pending = [a for a in archives if not record.get(a.name, {}).get("extracted")]
    _check_disk_space(data_dir, archive_dir, pending)
    for archive in pending:
        path = fetch_archive(archive, archive_dir, record_path, retries=retries, backoff=backoff,
                             timeout=timeout, progress=progress)
        log.info("extracting %s into %s", path.name, data_dir)
        extract(path, data_dir)
        update_record(record_path, archive.name, extracted=True)
        if not keep_archives:
            path.unlink()
    return data_dir


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: download and extract FreiHAND into ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m cliphand.data.download",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset root to fill")
    parser.add_argument("--archive", action="append", choices=sorted(ARCHIVES),
                        help="fetch only this archive (repeatable; default: all)")
    parser.add_argument("--archive-dir", type=Path, help="where to keep the zips "
                        "(default: OUT/archives)")
    parser.add_argument("--delete-archives", action="store_true",
                        help="delete each zip once extracted")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    archives = [ARCHIVES[n] for n in args.archive] if args.archive else FREIHAND_ARCHIVES
    try:
        root = fetch_freihand(args.out, archives, archive_dir=args.archive_dir,
                              keep_archives=not args.delete_archives, retries=args.retries,
                              progress=not args.no_progress)
    except DownloadError as e:
        raise SystemExit(f"error: {e}") from None
    print(root)


if __name__ == "__main__":
    main()
