"""Fetching FreiHAND: resumable, verified downloads and safe extraction of its archives.

Two folders: the dataset ``root`` that the archives unpack into (``data/raw``, a DVC output that
``dvc repro`` wipes) and the ``downloads`` folder (default ``data/downloads``) holding the
archives, their ``.part`` files, the lock and the checksum record ``checksums.json``. They must not
nest: a wiped root must neither take the record with it (the next run would download 4.4 GB and
trust it again) nor hold files that an archive member could overwrite.

FreiHAND publishes no checksums, so the first download of each archive records its size and
SHA-256 (trust on first use), but only once the file proved to be the expected zip: a readable
central directory, the archive's characteristic members, a plausible size, nothing unsafe to
extract. Every later download or reuse is checked against that record. A file becomes the archive
only once checked: bytes stream into ``<name>.part`` (resumed with ``Range`` and ``If-Range``
after an interruption) and a file that fails is moved aside to ``<name>.corrupt``.

Command line: ``python -m cliphand.data.download --out DIR [--downloads DIR]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from cliphand.data.layout import SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """One archive of the dataset: its file name (the key in the checksum record) and URL.

    ``required`` are paths (after the wrapper folder; ``dir/`` is a folder holding files) that
    only this archive has, and ``min_size`` the fewest bytes it can have: together they tell the
    archive from an error page, a cut-short body or the wrong file before it is trusted.
    """

    name: str
    url: str
    approx_size: int  # bytes, as announced by the dataset page; used for the disk-space check
    contents: str
    required: tuple[str, ...] = ()
    min_size: int = 0


FREIHAND_URL = "https://lmb.informatik.uni-freiburg.de/data/freihand"

# The two archives of FreiHAND v2. The second unpacks into its own folder, which extraction strips
# so that both merge into one dataset root. Minimum sizes: about half the announced size.
FREIHAND_ARCHIVES: tuple[Archive, ...] = (
    Archive(
        "FreiHAND_pub_v2.zip",
        f"{FREIHAND_URL}/FreiHAND_pub_v2.zip",
        3_700_000_000,
        "training/rgb, training/mask, training_{xyz,verts,K,mano,scale}.json, "
        "evaluation/rgb, evaluation_{K,scale}.json",
        required=("training/rgb/", "training_xyz.json"),
        min_size=1_800_000_000,
    ),
    Archive(
        "FreiHAND_pub_v2_eval.zip",
        f"{FREIHAND_URL}/FreiHAND_pub_v2_eval.zip",
        700_000_000,
        "evaluation_{xyz,verts,mano}.json and the evaluation masks",
        required=("evaluation_xyz.json",),
        min_size=350_000_000,
    ),
)
ARCHIVES: dict[str, Archive] = {a.name: a for a in FREIHAND_ARCHIVES}

DOWNLOADS = Path("data/downloads")
CHECKSUM_RECORD = "checksums.json"  # in the downloads folder: archive -> url, size, sha256
LOCK_FILE = ".lock"  # in the downloads folder
EXTRACTED_RECORD = ".cliphand-extracted.json"  # in the root: archive -> sha256 of what it holds
EXTRACT_PREFIX = ".extract-"  # temporary folders in the root
USER_AGENT = "cliphand-download/0.1 (+python urllib)"

# Extraction caps, with room to spare for FreiHAND: 4.4 GB of archives unpack to about 6 GB
# (JPEGs barely compress, the JSON annotations about 3-fold) in about 170,000 members. A zip bomb
# exceeds them in its central directory, before anything is written.
MAX_UNPACKED = 20_000_000_000  # bytes, all members together
MAX_RATIO = 100  # uncompressed / compressed size of one member ...
RATIO_FLOOR = 1 << 20  # ... of at least this many bytes (tiny members compress freely)
MAX_MEMBERS = 500_000


@dataclass(frozen=True)
class ExtractLimits:
    """What one archive may unpack to; the defaults fit FreiHAND, tests pass small ones."""

    max_unpacked: int = MAX_UNPACKED
    max_ratio: float = MAX_RATIO
    max_members: int = MAX_MEMBERS


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
    """A file is not the expected zip archive, or is corrupt or unsafe to extract."""

    def __init__(self, where: Path | str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


class _Interrupted(Exception):
    """A transfer stopped before its end; the retry loop resumes it."""


# Failures worth another attempt: the network or the server, not the local disk. Certificate
# errors are SSLErrors too but are singled out: no retry makes an untrusted certificate trusted.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
              ssl.SSLError, _Interrupted)


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else: before an archive's checksum is
    recorded, a plain-http hop would let anyone on the path replace it."""

    def redirect_request(self, req: urllib.request.Request, fp: http.client.HTTPResponse,
                         code: int, msg: str, headers: http.client.HTTPMessage, newurl: str
                         ) -> urllib.request.Request | None:
        scheme = urlsplit(newurl).scheme
        if urlsplit(req.full_url).scheme == "https" and scheme != "https":
            fp.close()
            raise DownloadError(f"{req.full_url}: refusing the redirect to {newurl} "
                                f"(https downgraded to {scheme})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


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


def _validator_path(part: Path) -> Path:
    """Where the If-Range validator of ``part`` is kept: beside it, so it lives and dies with it."""
    return part.with_name(part.name + ".validator")


def _response_validator(headers: http.client.HTTPMessage) -> str | None:
    """The If-Range validator of a response: a strong ETag (weak ones are not allowed in
    If-Range), else Last-Modified."""
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")


def _stored_validator(part: Path, url: str) -> str | None:
    """The validator recorded when ``part`` was started from ``url``; None if there is none."""
    try:
        meta = json.loads(_validator_path(part).read_text())
    except (OSError, ValueError):
        return None
    return meta.get("validator") if isinstance(meta, dict) and meta.get("url") == url else None


def _discard(part: Path) -> None:
    """Delete a partial download and its validator."""
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)


def _transfer(url: str, part: Path, expected_size: int | None, timeout: float, chunk_size: int,
              progress: bool, label: str) -> None:
    """One attempt: fetch what ``part`` still lacks, appending to it, or restart from zero."""
    have = part.stat().st_size if part.exists() else 0
    if_range = _stored_validator(part, url) if have else None
    if have and if_range is None:  # no way to tell the server which version these bytes are of
        _discard(part)
        have = 0
    if expected_size is not None and have >= expected_size:
        if have == expected_size:
            return  # complete already; verification decides whether it is right
        _discard(part)  # longer than the file can be: it belongs to something else
        have = 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        # If-Range: a file changed upstream comes whole (200) instead of spliced onto the old part.
        headers.update({"Range": f"bytes={have}-", "If-Range": if_range})
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            _, total = _parse_content_range(e.headers.get("Content-Range"))
            e.close()
            if total == have:
                return  # nothing beyond what we hold
            _discard(part)
            raise _Interrupted(f"server refused to resume at byte {have} "
                               f"(remote size {total}); restarting") from None
        raise
    with response:
        validator = _response_validator(response.headers)
        if response.status == 206:
            if validator is not None and validator != if_range:
                _discard(part)  # a server that ignored If-Range but gave itself away
                raise _Interrupted(f"remote file changed ({if_range} -> {validator}); restarting")
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != have:
                _discard(part)
                raise _Interrupted(f"server resumed at byte {start}, asked for {have}; restarting")
            mode = "ab"
        else:  # 200: the whole body, even if we asked for a range
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            _validator_path(part).write_text(json.dumps({"url": url, "validator": validator}))
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


def _certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``error`` (urllib wraps it in URLError)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return reason if isinstance(reason, ssl.SSLCertVerificationError) else None


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
             expected_sha256: str | None = None, check: Callable[[Path], None] | None = None,
             retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
             chunk_size: int = 1 << 20, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming after interruptions, and verify it.

    Bytes go to ``dest.part``; an interrupted transfer is resumed with a Range request guarded by
    If-Range (the first response's ETag or Last-Modified, kept in ``dest.part.validator``), so a
    file changed upstream, or a server that ignores the range, restarts from zero. Network errors,
    timeouts and HTTP 5xx are retried up to ``retries`` times in a row with exponential backoff
    (``backoff * 2**k`` seconds); an attempt that made progress resets the count. Other HTTP
    errors (404), certificate errors and redirects from https to http fail at once. The finished
    file must pass ``check`` (which raises ArchiveError) and match ``expected_size`` and
    ``expected_sha256`` (when given) or it is moved to ``dest.corrupt`` and the error raised;
    only then is it renamed to ``dest``. An existing ``dest`` that passes the same checks is
    returned as is; one that fails is moved aside and downloaded again.
    """
    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (check or expected_size is not None or expected_sha256 is not None):
        try:
            if check is not None:
                check(dest)
            verify(dest, expected_size, expected_sha256)
            return dest
        except (ChecksumError, ArchiveError) as e:
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
            _discard(part)  # the remote file is not the one expected
            raise
        except _TRANSIENT as e:
            if (bad_cert := _certificate_error(e)) is not None:
                raise DownloadError(f"{url}: TLS certificate rejected "
                                    f"({bad_cert.verify_message or bad_cert}); not retrying"
                                    ) from None
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
        if check is not None:
            check(part)
        verify(part, expected_size, expected_sha256, name=dest.name)
    except ArchiveError as e:
        bad = _quarantine(part, dest)
        raise ArchiveError(url, f"{e.reason}; moved aside to {bad}") from None
    except ChecksumError as e:
        bad = _quarantine(part, dest)
        raise ChecksumError(e.name, e.what, e.expected, e.actual,
                            f" (downloaded from {url}; moved aside to {bad})") from None
    finally:
        _validator_path(part).unlink(missing_ok=True)
    os.replace(part, dest)
    return dest


def read_record(path: Path) -> dict[str, dict]:
    """A JSON record of archive name -> fields (checksums, or what was extracted); {} if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DownloadError(f"{path}: unreadable record: {e}") from None
    if not isinstance(record, dict):
        raise DownloadError(f"{path}: record is not a JSON object")
    return record


def update_record(path: Path, name: str, **fields: object) -> None:
    """Set fields of one archive's entry in a record, atomically."""
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


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Path components of a zip member, refusing any that would land outside the destination."""
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or ".." in parts or (parts and ":" in parts[0]):
        raise ArchiveError(archive, f"refusing unsafe member path {name!r} "
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


def _open_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip archive, or say in one line what the file is instead."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        with open(path, "rb") as f:
            head = f.read(512).lstrip()
        if head[:1] == b"<":
            reason = "an HTML page, not a zip (an error page served in place of the archive?)"
        elif not head:
            reason = "empty file, not a zip"
        elif head.startswith(b"PK\x03\x04"):
            reason = f"not a readable zip archive: {e} (cut short?)"
        else:
            reason = f"not a readable zip archive (it starts with {head[:16]!r})"
        raise ArchiveError(path, reason) from None


def _plan(zf: zipfile.ZipFile, archive: Path, limits: ExtractLimits
          ) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to extract, each with its path below the destination (wrapper stripped).

    Refuses, from the central directory alone: too many members, too many bytes, a member that
    expands like a zip bomb, unsafe paths, symbolic links, a path that is both a file and a
    folder, and a member that would overwrite the extraction record.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(archive, f"{len(infos)} members, more than the limit of "
                                    f"{limits.max_members}")
    # macOS archivers add resource forks under __MACOSX/; they are no part of the dataset.
    infos = [i for i in infos if not i.filename.startswith("__MACOSX/")]
    total = sum(i.file_size for i in infos)
    if total > limits.max_unpacked:
        raise ArchiveError(archive, f"unpacks to {total} bytes, more than the limit of "
                                    f"{limits.max_unpacked}")
    members = []
    for info in infos:
        parts = _member_parts(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(archive, f"refusing symbolic link member {info.filename!r}")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_FLOOR and ratio > limits.max_ratio:
            raise ArchiveError(archive, f"member {info.filename} expands {ratio:.0f}-fold, more "
                                        f"than the limit of {limits.max_ratio} (a zip bomb?)")
        members.append((info, parts))
    strip = 1 if _wrapper([(parts, info.is_dir()) for info, parts in members]) else 0
    members = [(info, parts[strip:]) for info, parts in members if len(parts) > strip]
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for info, parts in members:
        folders.update(parts[:k] for k in range(1, len(parts)))
        if info.is_dir():
            folders.add(parts)
        elif parts in files:
            raise ArchiveError(archive, f"member {info.filename} appears twice")
        else:
            files.add(parts)
    if clash := files & folders:
        raise ArchiveError(archive, f"{'/'.join(min(clash))} is both a file and a folder")
    if (EXTRACTED_RECORD,) in files | folders:
        raise ArchiveError(archive, f"member {EXTRACTED_RECORD} would overwrite the record of "
                                    "what was extracted")
    return members


def check_archive(path: Path, archive: Archive, limits: ExtractLimits = ExtractLimits()) -> None:
    """Raise ArchiveError unless ``path`` is plausibly ``archive``: a zip whose central directory
    reads, at least ``archive.min_size`` bytes, holding ``archive.required``, and safe to
    extract within ``limits``. It runs before a checksum is recorded: only such files are trusted.
    """
    path = Path(path)
    with _open_zip(path) as zf:
        size = path.stat().st_size
        if size < archive.min_size:
            raise ArchiveError(path, f"only {size} bytes, but {archive.name} has at least "
                                     f"{archive.min_size}")
        members = _plan(zf, path, limits)
    files = ["/".join(parts) for info, parts in members if not info.is_dir()]
    missing = [r for r in archive.required
               if not any(f == r or (r.endswith("/") and f.startswith(r)) for f in files)]
    if missing:
        raise ArchiveError(path, f"not {archive.name}: it lacks {', '.join(missing)}")


def fetch_archive(archive: Archive, downloads: Path, *,
                  limits: ExtractLimits = ExtractLimits(), **download_options) -> Path:
    """Download (or reuse) one archive into ``downloads``, checked by :func:`check_archive` and
    verified against the checksum record ``downloads/checksums.json``.

    Without a record entry, the archive's size and SHA-256 are recorded once it passed
    :func:`check_archive` (trust on first use; this also adopts an archive fetched by hand). An
    existing archive that fails either is moved aside and downloaded again. Callers running
    concurrently must hold the downloads lock (:func:`fetch_freihand` does).
    ``download_options`` go to :func:`download`.
    """
    downloads = Path(downloads)
    record_path = downloads / CHECKSUM_RECORD
    known = read_record(record_path).get(archive.name, {})
    size, sha = known.get("size"), known.get("sha256")
    dest = downloads / archive.name
    try:
        download(archive.url, dest, expected_size=size, expected_sha256=sha,
                 check=partial(check_archive, archive=archive, limits=limits),
                 **download_options)
    except ChecksumError as e:
        raise ChecksumError(e.name, e.what, e.expected, e.actual,
                            f"{e.detail}; expected values from {record_path} (delete its "
                            f"{archive.name!r} entry if the archive changed upstream)") from None
    if sha is None:
        update_record(record_path, archive.name, url=archive.url, size=dest.stat().st_size,
                      sha256=sha256_of(dest))
    return dest


def _merge_plan(src: Path, dst: Path, archive: Path) -> list[tuple[Path, Path]]:
    """The renames that move the tree ``src`` into ``dst``, merging into existing folders;
    raises on a file/folder clash before anything has moved."""
    moves = []
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            moves += _merge_plan(entry, target, archive)
        elif target.exists() and entry.is_dir() != target.is_dir():
            kinds = ("folder", "file") if target.is_dir() else ("file", "folder")
            raise ArchiveError(archive, f"{target} is a {kinds[0]}, the archive has a {kinds[1]} "
                                        "there; nothing was extracted")
        else:
            moves.append((entry, target))
    return moves


def extract(archive: Path, dest_dir: Path, *, limits: ExtractLimits = ExtractLimits()) -> Path:
    """Extract a zip archive into ``dest_dir`` and return ``dest_dir``.

    Everything :func:`_plan` refuses (zip bombs beyond ``limits``, unsafe paths, symbolic links)
    makes it refuse the whole archive before writing anything. A single top-level folder wrapping
    everything (other than ``training/`` or ``evaluation/``) is stripped, so the files land at the
    dataset root. Members are extracted into a hidden temporary folder inside ``dest_dir`` and
    then renamed into place once no file/folder clash is found, so a failed extraction leaves no
    half-written files among the dataset's.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    with _open_zip(archive) as zf:
        members = _plan(zf, archive, limits)
        dest_dir.mkdir(parents=True, exist_ok=True)
        need, free = sum(i.file_size for i, _ in members), shutil.disk_usage(dest_dir).free
        if need > free:
            raise ArchiveError(archive, f"unpacks to {need / 1e9:.1f} GB, but {dest_dir} has "
                                        f"{free / 1e9:.1f} GB free")
        tmp = Path(tempfile.mkdtemp(prefix=f"{EXTRACT_PREFIX}{archive.name}-", dir=dest_dir))
        try:
            for info, parts in members:
                target = tmp.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:  # zipfile stops each member at its declared size, which _plan capped
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                    raise ArchiveError(archive, f"corrupt member {info.filename}: {e}") from None
            for src, dst in _merge_plan(tmp, dest_dir, archive):
                os.replace(src, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


@contextmanager
def _exclusive(downloads: Path) -> Iterator[None]:
    """Hold the downloads folder's lock, or fail at once: a second run would write into the same
    ``.part`` files and delete the first run's temporary folders. The lock file keeps the
    holder's pid for the error message; the kernel drops the lock when its holder dies."""
    path = downloads / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise DownloadError(f"{path}: another download (pid {holder}) is using {downloads}; "
                                "wait for it to finish") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def _check_disk_space(root: Path, downloads: Path, pending: Sequence[Archive]) -> None:
    """Fail before downloading when the disks clearly cannot hold the archives and what they
    unpack to."""
    missing = [a for a in pending if not (downloads / a.name).exists()]
    wanted = ((downloads, sum(a.approx_size for a in missing)),
              (root, sum(a.approx_size for a in pending)))
    by_device: dict[int, tuple[Path, int]] = {}
    for folder, need in wanted:
        device = folder.stat().st_dev
        first, total = by_device.get(device, (folder, 0))
        by_device[device] = (first, total + need)
    for folder, need in by_device.values():
        free = shutil.disk_usage(folder).free
        if free < need:
            raise DownloadError(f"not enough disk space in {folder}: about {need / 1e9:.1f} GB "
                                f"needed, {free / 1e9:.1f} GB free")


def _is_extracted(name: str, known: dict[str, dict], extracted: dict[str, dict]) -> bool:
    """Whether the root holds archive ``name``, and the very version whose checksum is recorded
    (an entry deleted and pinned again after an upstream change is extracted again)."""
    sha = extracted.get(name, {}).get("sha256")
    return sha is not None and known.get(name, {}).get("sha256", sha) == sha


def fetch_freihand(root: Path, archives: Sequence[Archive] = FREIHAND_ARCHIVES, *,
                   downloads: Path = DOWNLOADS, keep_archives: bool = True, retries: int = 5,
                   backoff: float = 1.0, timeout: float = 60.0, progress: bool = True,
                   limits: ExtractLimits = ExtractLimits()) -> Path:
    """Download, verify and extract FreiHAND into ``root``; return ``root``.

    The archives, their checksum record and the lock live in ``downloads``, which must lie
    outside ``root``. Idempotent: an archive already extracted (as noted in
    ``root/.cliphand-extracted.json``, which goes when the root is wiped) is skipped, one already
    downloaded is re-verified instead of fetched. Archives are kept unless ``keep_archives`` is
    false; their checksums are kept either way. A second run on the same ``downloads`` while
    one is running fails at once with DownloadError.
    """
    root, downloads = Path(root), Path(downloads)
    if downloads.resolve().is_relative_to(root.resolve()):
        raise DownloadError(f"{downloads}: the downloads folder must lie outside the dataset "
                            f"root {root}, or wiping the root would lose the checksums")
    root.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    with _exclusive(downloads):
        for stale in root.glob(EXTRACT_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed
        record_path, extracted_path = downloads / CHECKSUM_RECORD, root / EXTRACTED_RECORD
        known, extracted = read_record(record_path), read_record(extracted_path)
        pending = [a for a in archives if not _is_extracted(a.name, known, extracted)]
        _check_disk_space(root, downloads, pending)
        for archive in pending:
            path = fetch_archive(archive, downloads, limits=limits, retries=retries,
                                 backoff=backoff, timeout=timeout, progress=progress)
            log.info("extracting %s into %s", path.name, root)
            extract(path, root, limits=limits)
            update_record(extracted_path, archive.name,
                          sha256=read_record(record_path)[archive.name]["sha256"])
            if not keep_archives:
                path.unlink()
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: download and extract FreiHAND into ``--out``.

    Every expected failure (network, disk, a bad archive) ends in one line on stderr and exit
    status 1; ``--debug`` or ``CLIPHAND_DEBUG=1`` shows the traceback instead.
    """
    parser = argparse.ArgumentParser(prog="python -m cliphand.data.download",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset root to fill")
    parser.add_argument("--downloads", type=Path, default=DOWNLOADS,
                        help="where the zips, partial downloads and checksum record live, "
                             "outside OUT (default: %(default)s)")
    parser.add_argument("--archive", action="append", choices=sorted(ARCHIVES),
                        help="fetch only this archive (repeatable; default: all)")
    parser.add_argument("--delete-archives", action="store_true",
                        help="delete each zip once extracted (its checksum is kept)")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks (also: environment CLIPHAND_DEBUG=1)")
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("CLIPHAND_DEBUG") == "1"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    archives = [ARCHIVES[n] for n in args.archive] if args.archive else FREIHAND_ARCHIVES
    try:
        root = fetch_freihand(args.out, archives, downloads=args.downloads,
                              keep_archives=not args.delete_archives, retries=args.retries,
                              progress=not args.no_progress)
    except (DownloadError, OSError, zipfile.BadZipFile) as e:
        if debug:
            raise
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        if debug:
            raise
        raise SystemExit("interrupted; run it again to resume") from None
    print(root)


if __name__ == "__main__":
    main()
