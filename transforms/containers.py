"""Compression and containers of the inputs, decided by their bytes, never by their names.

An input file is plain bytes, one compressed stream (gzip, bzip2, xz, zstd), or a container of files
(zip, tar), itself possibly compressed (``.tar.gz``) or nested (a tar of ``.json.bz2`` minutes, a zip
of ``.js``). Each file inside is an input of its own, named ``container!member``.

Work is split where the format allows it: ``list_units`` lists the members of a zip (its central
directory) or of an uncompressed tar (its headers, seeking over the data), and every member becomes a
``Unit`` that any worker can open on its own by seeking to its bytes. So a 50 GB stream-grab tar is
parsed by every worker. A compressed tar can only be read from its start: it is one unit, expanded in
order by the worker that reads it (``expand``).
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

try:  # zstd is in the stdlib only from Python 3.14
    import zstandard
except ImportError:  # pragma: no cover - a declared dependency
    zstandard = None

logger = logging.getLogger(__name__)

GZIP, BZIP2, XZ, ZSTD, ZIP, TAR, RAW = "gzip", "bz2", "xz", "zstd", "zip", "tar", "raw"
FILE = "file"
COMPRESSIONS = (GZIP, BZIP2, XZ, ZSTD)

SNIFF_BYTES = 64 << 10  # what is looked at (after decompression) to tell a container from a file
SPOOL_BYTES = 64 << 20  # a nested zip is copied to memory up to this size, to disk beyond
MAX_DEPTH = 4  # containers inside containers deeper than this are an error, not a zip bomb

# Errors of broken compressed or container data: the input is truncated or corrupt.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, zipfile.BadZipFile, tarfile.TarError,
) + ((zstandard.ZstdError,) if zstandard is not None else ())

REASON_CORRUPT_CONTAINER = "corrupt_container"
REASON_ENCRYPTED_MEMBER = "encrypted_member"
REASON_TOO_DEEP = "containers_nested_too_deep"

SKIP_HIDDEN = "hidden file"
SKIP_ARCHIVE_VIEWER = "account archive: viewer or media file, not tweet data"


def sniff(head: bytes) -> str:
    """What the bytes are: a compression, a container, or ``RAW`` (anything else)."""
    if head[:2] == b"\x1f\x8b":
        return GZIP
    if head[:3] == b"BZh" and b"1" <= head[3:4] <= b"9":
        return BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return XZ
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return ZSTD
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip, or an empty zip
        return ZIP
    if head[257:262] == b"ustar":  # POSIX ("ustar\0") and GNU ("ustar  ") tar headers
        return TAR
    return RAW


def decompress_head(head: bytes, limit: int = SNIFF_BYTES) -> bytes:
    """The first bytes of ``head`` decompressed as far as they go (for sniffing only); raw if plain."""
    kind = sniff(head)
    try:
        if kind == GZIP:
            return zlib.decompressobj(wbits=31).decompress(head, limit)
        if kind == BZIP2:
            return bz2.BZ2Decompressor().decompress(head, limit)
        if kind == XZ:
            return lzma.LZMADecompressor().decompress(head, limit)
        if kind == ZSTD and zstandard is not None:
            return zstandard.ZstdDecompressor().decompressobj().decompress(head)[:limit]
    except STREAM_ERRORS:
        return b""
    return head


_PEEK_LIMIT = 4 << 20  # a zstd block can be 128 KiB: a compressed head may need this much to decode


def peek(raw: BinaryIO, want: int = 512) -> tuple[bytes, bytes]:
    """The first raw bytes of ``raw`` and what they decode to: at least ``want`` bytes where the
    stream has them (compressed blocks decode only whole, so more raw bytes may be read)."""
    head = read_head(raw, SNIFF_BYTES)
    decoded = decompress_head(head)
    while sniff(head) in COMPRESSIONS and len(decoded) < want and len(head) < _PEEK_LIMIT:
        more = read_head(raw, len(head))
        if not more:
            break
        head += more
        decoded = decompress_head(head)
    return head, decoded


def open_decompressor(kind: str, raw: BinaryIO) -> Any:
    """A decompressing reader (with ``read1``) over ``raw`` for compression ``kind``."""
    if kind == GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == BZIP2:
        return bz2.BZ2File(raw, mode="rb")
    if kind == XZ:
        return lzma.LZMAFile(raw, mode="rb")
    if kind == ZSTD:
        if zstandard is None:  # pragma: no cover
            raise OSError("zstd input needs the zstandard package: pip install zstandard")
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise ValueError(f"not a compression: {kind}")


class _Reader(io.RawIOBase):
    """A read-only stream defined by its ``read``; ``read1`` and ``readinto`` follow from it."""

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Replay(_Reader):
    """A stream that first replays bytes already read (for sniffing), then reads on."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        super().__init__()
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0 or size >= len(self._prefix):
                out, self._prefix = self._prefix, b""
                if size is None or size < 0:
                    return out + self._stream.read()
                return out
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return self._stream.read(size)


def read_head(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes (streams may return less per read)."""
    data, failure = _read_head_safely(stream, size)
    if failure is not None:
        raise failure
    return data


class _Bounded(_Reader):
    """The ``size`` bytes of a tar member, read from its container positioned at their start."""

    def __init__(self, stream: BinaryIO, size: int):
        super().__init__()
        self._stream = stream
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._stream.close()
        super().close()


# ---------------------------------------------------------------------------------------------------
# Units of work
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locator:
    """Where a member's bytes are inside its container file, so a worker can seek straight to them."""

    member: str  # the name inside the container; for FILE, the file's own path
    kind: str  # ZIP, TAR, or FILE (a file of a folder, beside the one being read)
    offset: int  # tar: the first data byte; zip: the member's local header
    size: int  # tar: data bytes; zip: compressed bytes
    zip_meta: tuple[int, ...] = ()  # zip: compress_type, file_size, flag_bits, CRC


@dataclass(frozen=True)
class Unit:
    """One piece of parse work: a whole input file, or one member of a container."""

    path: str  # the input file as matched (any Beam path)
    locator: Locator | None = None  # None: the whole file
    # Members of the same folder an account archive's tweets need (account.js, note-tweet.js, tweets).
    siblings: tuple[Locator, ...] = ()
    skip: str = ""  # not opened: reported as skipped for this reason
    error: tuple[str, str, int | None] | None = None  # (reason, detail, byte offset): a dead letter
    in_archive: bool = False  # in an account archive's data folder (see ``plan_files``)

    @property
    def name(self) -> str:
        return f"{self.path}!{self.locator.member}" if self.locator else self.path


def _hidden(member: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member.split("/") if part)


_ARCHIVE_MARKERS = ("manifest.js", "account.js")
# Files of an account archive's data folder that a tweets file may need.
ARCHIVE_SIBLING = re.compile(r"(?:account|note-tweet(?:-part\d+)?|tweets?(?:-part\d+)?)\.js", re.IGNORECASE)


def _folder(member: str) -> str:
    return member.rsplit("/", 1)[0] if "/" in member else ""


def _base(member: str) -> str:
    return member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Planned:
    """What the layout of a container or folder says of one of its files."""

    name: str  # relative to the container or folder
    skip: str = ""
    siblings: tuple[str, ...] = ()  # names of the account-archive files its tweets may need
    in_archive: bool = False  # in an account archive's data folder: only datasets are read


def plan_files(names: list[str]) -> Iterator[Planned]:
    """Apply the layout rules to the file names of one container or folder.

    Hidden files are skipped. Twitter's archive download holds a ``data/`` folder (``manifest.js``,
    ``account.js``, ``tweets.js``...) beside an HTML viewer and media: in such an archive only the
    ``data/*.js`` files are opened (by content they are tweets, or datasets that are skipped), the
    rest is skipped.
    """
    data_dirs = {_folder(n) for n in names if _base(n).lower() in _ARCHIVE_MARKERS and not _hidden(n)}
    roots = {_folder(d) for d in data_dirs}
    by_folder: dict[str, list[str]] = {}
    for n in names:
        if ARCHIVE_SIBLING.fullmatch(_base(n)):
            by_folder.setdefault(_folder(n), []).append(n)
    for n in names:
        folder = _folder(n)
        if _hidden(n):
            yield Planned(n, skip=SKIP_HIDDEN)
        elif folder in data_dirs and n.lower().endswith(".js"):
            yield Planned(n, siblings=tuple(s for s in by_folder.get(folder, ()) if s != n), in_archive=True)
        elif any(r == "" or folder == r or folder.startswith(r + "/") for r in roots):
            yield Planned(n, skip=SKIP_ARCHIVE_VIEWER)
        else:
            yield Planned(n)


def _units_of_members(path: str, locators: list[Locator]) -> Iterator[Unit]:
    by_name = {loc.member: loc for loc in locators}
    for planned in plan_files([loc.member for loc in locators]):
        yield Unit(path, by_name[planned.name], tuple(by_name[s] for s in planned.siblings), planned.skip,
                   in_archive=planned.in_archive)


def list_units(path: str, fileobj: BinaryIO) -> Iterator[Unit]:
    """The units of one input file: its members when it is a zip or an uncompressed tar, else itself.

    ``fileobj`` must be seekable (Beam's local and GCS readers are). A container that breaks part-way
    lists the members before the break, then one unit carrying the error.
    """
    head = read_head(fileobj, 512)
    kind = sniff(head)
    if kind not in (ZIP, TAR):
        yield Unit(path)
        return
    fileobj.seek(0)
    locators: list[Locator] = []
    error = None
    try:
        if kind == ZIP:
            locators = list(_zip_locators(fileobj))
        else:
            for loc in _tar_locators(fileobj):
                locators.append(loc)
    except STREAM_ERRORS as e:
        reason = "truncated_stream" if isinstance(e, EOFError) or "unexpected end" in str(e) else (
            REASON_CORRUPT_CONTAINER)
        error = (reason, f"{kind} container breaks after {len(locators)} members: {e}", None)
    yield from _units_of_members(path, locators)
    if error is not None:
        yield Unit(path, error=error)


def _zip_locators(fileobj: BinaryIO) -> Iterator[Locator]:
    with zipfile.ZipFile(fileobj) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            yield Locator(info.filename, ZIP, info.header_offset, info.compress_size,
                          (info.compress_type, info.file_size, info.flag_bits, info.CRC))


def _tar_locators(fileobj: BinaryIO) -> Iterator[Locator]:
    with tarfile.open(fileobj=fileobj, mode="r:") as tf:
        while True:
            info = tf.next()
            if info is None:
                return
            if info.isreg() and not info.issparse():
                yield Locator(info.name, TAR, info.offset_data, info.size)


def open_member(container: BinaryIO, loc: Locator) -> BinaryIO:
    """The raw bytes of one member of ``container`` (seekable), read from its own offset."""
    if loc.kind == TAR:
        container.seek(loc.offset)
        return _Bounded(container, loc.size)
    compress_type, file_size, flag_bits, crc = loc.zip_meta
    if flag_bits & 0x1:
        raise zipfile.BadZipFile(f"{loc.member} is encrypted")
    container.seek(loc.offset)
    header = read_head(container, zipfile.sizeFileHeader)
    fields = struct.unpack(zipfile.structFileHeader, header)
    if fields[zipfile._FH_SIGNATURE] != zipfile.stringFileHeader:
        raise zipfile.BadZipFile(f"bad local header for {loc.member}")
    container.seek(loc.offset + zipfile.sizeFileHeader + fields[zipfile._FH_FILENAME_LENGTH]
                   + fields[zipfile._FH_EXTRA_FIELD_LENGTH])
    info = zipfile.ZipInfo(loc.member)
    info.compress_type, info.compress_size, info.file_size = compress_type, loc.size, file_size
    info.flag_bits, info.CRC = flag_bits, crc
    return zipfile.ZipExtFile(container, "rb", info, None, True)  # checks the CRC at the end


# ---------------------------------------------------------------------------------------------------
# Expanding a byte stream into the files to parse
# ---------------------------------------------------------------------------------------------------


@dataclass
class Leaf:
    """A file to parse (``stream`` holds its raw, maybe compressed bytes), or why there is none."""

    name: str
    stream: BinaryIO | None = None
    skip: str = ""
    error: tuple[str, str, int | None] | None = None
    in_archive: bool = False
    decoded: bytes = b""  # the first bytes of the stream, decompressed (for dataset detection)


def expand(name: str, raw: BinaryIO, depth: int = 0) -> Iterator[Leaf]:
    """The files in ``raw``: itself, or recursively the members of the (compressed) container it is.

    A compressed stream is decoded once: its first decoded bytes tell a container from a file, and
    the leaf's stream goes on from there. Members of a container found here are read in order by
    this worker (compressed tars, containers inside container members).
    """
    magic = read_head(raw, 512)
    kind = sniff(magic)
    if kind in COMPRESSIONS:
        source: Any = open_decompressor(kind, Replay(magic, raw))
        decoded, failure = _read_head_safely(source, SNIFF_BYTES)
        stream: Any = Replay(decoded, _Failing(failure) if failure is not None else source)
    else:
        decoded = magic + read_head(raw, SNIFF_BYTES - len(magic))
        stream = Replay(decoded, raw)
    inner = sniff(decoded)
    if inner not in (ZIP, TAR):
        yield Leaf(name, stream, decoded=decoded)
        return
    if depth >= MAX_DEPTH:
        yield Leaf(name, error=(REASON_TOO_DEEP, f"more than {MAX_DEPTH} nested containers", 0))
        return
    if inner == TAR:
        yield from _expand_tar(name, stream, depth)
    else:
        yield from _expand_zip(name, stream, depth)


def _read_head_safely(stream: Any, size: int) -> tuple[bytes, BaseException | None]:
    """Like ``read_head``, keeping what was decoded before a break, and the break."""
    parts, got = [], 0
    read = getattr(stream, "read1", stream.read)  # one step: a buffered read loses its data on a break
    try:
        while got < size:
            data = read(size - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
    except STREAM_ERRORS as e:
        return b"".join(parts), e
    return b"".join(parts), None


class _Failing(_Reader):
    """The rest of a stream that broke while its head was read: reading raises that break again,
    so the parser keeps the records before it and reports the break as it does for any stream."""

    def __init__(self, error: BaseException):
        super().__init__()
        self._error = error

    def read(self, size: int = -1) -> bytes:
        raise self._error


def _expand_tar(name: str, stream: Any, depth: int) -> Iterator[Leaf]:
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for info in tf:
                if not info.isreg():
                    continue
                count += 1
                member = f"{name}!{info.name}"
                if _hidden(info.name):
                    yield Leaf(member, skip=SKIP_HIDDEN)
                    continue
                yield from expand(member, tf.extractfile(info), depth + 1)
    except STREAM_ERRORS as e:
        reason = "truncated_stream" if isinstance(e, EOFError) or "unexpected end" in str(e) else (
            REASON_CORRUPT_CONTAINER)
        yield Leaf(name, error=(reason, f"tar stream breaks after {count} members: {e}", None))


def _expand_zip(name: str, stream: Any, depth: int) -> Iterator[Leaf]:
    """A zip needs random access: one that is not seekable here is spooled first."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            while True:
                data = stream.read(1 << 20)
                if not data:
                    break
                spool.write(data)
            spool.seek(0)
            locators = list(_zip_locators(spool))
        except STREAM_ERRORS as e:
            yield Leaf(name, error=(REASON_CORRUPT_CONTAINER, f"zip: {e}", None))
            return
        for unit in _units_of_members(name, locators):
            if unit.skip:
                yield Leaf(unit.name, skip=unit.skip)
                continue
            try:
                member = open_member(spool, unit.locator)
            except STREAM_ERRORS as e:
                yield Leaf(unit.name, error=_member_error(e))
                continue
            for leaf in expand(unit.name, member, depth + 1):
                leaf.in_archive = leaf.in_archive or (unit.in_archive and leaf.name == unit.name)
                yield leaf


def _member_error(e: BaseException) -> tuple[str, str, int | None]:
    if "encrypted" in str(e):
        return REASON_ENCRYPTED_MEMBER, str(e), 0
    return REASON_CORRUPT_CONTAINER, str(e), 0


def leaves(unit: Unit, open_file: Callable[[str], BinaryIO]) -> Iterator[Leaf]:
    """The files a unit holds, opened with ``open_file`` (a Beam path -> seekable binary stream)."""
    if unit.skip:
        yield Leaf(unit.name, skip=unit.skip)
        return
    if unit.error is not None:
        yield Leaf(unit.name, error=unit.error)
        return
    f = open_file(unit.path)
    try:
        if unit.locator is None:
            member, depth = f, 0
        else:
            try:
                member, depth = open_member(f, unit.locator), 1
            except STREAM_ERRORS as e:
                yield Leaf(unit.name, error=_member_error(e))
                return
        for leaf in expand(unit.name, member, depth):
            leaf.in_archive = unit.in_archive and leaf.name == unit.name
            yield leaf
    finally:
        f.close()
