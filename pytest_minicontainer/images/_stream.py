"""A forward-only, hashing, decompressing reader for layer blobs.

Layers are read exactly once, front to back: the compressed bytes are hashed (the blob
digest), decompressed, hashed again (the diff id) and handed to the tar reader
(:mod:`._tar`), which only ever reads or skips forward.  Decompression happens here, chosen
from the bytes rather than the media type (media types lie: docker-archive layers are plain
tar whatever the manifest says), so that zstd can stay optional.  Output is bounded per
read, so a decompression bomb costs time, never memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import zlib
from typing import IO, Any, cast

from ..errors import ImageError

__all__ = ["CHUNK", "ZSTD_EXTRA", "LayerReader", "compression_of"]

CHUNK = 1 << 20
ZSTD_EXTRA = "pytest-minicontainer[zstd]"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``tar``, from the first bytes of a blob."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "tar"


class _HashingRaw:
    """The compressed side: hashes and counts what it hands on."""

    def __init__(self, raw: IO[bytes], head: bytes) -> None:
        self._raw = raw
        self._head = head
        self.hash = hashlib.sha256(head)
        self.size = len(head)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        data = self._raw.read(n if n and n > 0 else CHUNK)
        self.hash.update(data)
        self.size += len(data)
        return data


class _GzipDecoder:
    """gzip with concatenated members (pigz writes them) and trailing zero padding."""

    def __init__(self, src: _HashingRaw) -> None:
        self._src = src
        self._z = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._done = False

    def read(self, n: int) -> bytes:
        while not self._done:
            if not self._pending:
                self._pending = self._src.read(CHUNK)
                if not self._pending:
                    # output still in flight when the input ended right at the read limit
                    tail = b"" if self._z.eof else self._z.flush()
                    if not self._z.eof:
                        raise ImageError("corrupt gzip stream: unexpected end of data (truncated?)")
                    self._done = True
                    if tail:
                        return tail
                    break
            try:
                out = self._z.decompress(self._pending, n)
            except zlib.error as exc:
                raise ImageError(f"corrupt gzip stream: {exc}") from None
            if self._z.eof:
                rest = self._z.unused_data
                if rest.strip(b"\0"):
                    self._z = zlib.decompressobj(wbits=31)
                    self._pending = rest
                else:
                    self._pending = b""
                    # drain the raw side so the blob digest covers every byte
                    while True:
                        more = self._src.read(CHUNK)
                        if not more:
                            break
                        if more.strip(b"\0"):
                            self._z = zlib.decompressobj(wbits=31)
                            self._pending = more
                            break
            else:
                self._pending = self._z.unconsumed_tail
            if out:
                return out
        return b""


class _ZstdDecoder:
    def __init__(self, src: _HashingRaw) -> None:
        try:
            import zstandard
        except ImportError:
            raise ImageError(
                "layer is zstd-compressed but the 'zstandard' module is not installed;"
                f" install the optional extra: pip install '{ZSTD_EXTRA}'"
            ) from None
        self._error: type[Exception] = zstandard.ZstdError
        self._r: Any = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], src), read_size=CHUNK, read_across_frames=True, closefd=False
        )

    def read(self, n: int) -> bytes:
        try:
            out: bytes = self._r.read(n)
        except self._error as exc:
            raise ImageError(f"corrupt zstd stream: {exc}") from None
        return out


class LayerReader:
    """Read a (maybe compressed) tar blob forward only, hashing both sides.

    Reading the blob, hashing it and decompressing it happen in a helper thread (all three
    release the GIL), so they overlap with the file creation the unpacker does meanwhile;
    a bounded queue keeps at most a few MiB in flight.  ``blob_digest`` and ``diff_digest``
    are complete once :meth:`drain` returned.  ``seek`` accepts only positions at or after
    the current one.  Always :meth:`close` it (it is a context manager): that stops the
    helper thread when unpacking fails half way.
    """

    _DEPTH = 8

    def __init__(self, raw: IO[bytes]) -> None:
        head = raw.read(8)
        self.compression = compression_of(head)
        self._src = _HashingRaw(raw, head)
        self._dec: _HashingRaw | _GzipDecoder | _ZstdDecoder
        if self.compression == "gzip":
            self._dec = _GzipDecoder(self._src)
        elif self.compression == "zstd":
            self._dec = _ZstdDecoder(self._src)
        else:
            self._dec = self._src
        self._diff_hash = hashlib.sha256()
        self._buf = b""
        self._off = 0  # read position inside _buf
        self._pos = 0  # absolute position in the decompressed stream
        self._eof = False
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="minicontainer-layer-reader", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        hash_diff = self._dec is not self._src  # plain tar: the blob digest is the diff id
        item: bytes | BaseException | None
        while True:
            try:
                data = self._dec.read(CHUNK)
                if data and hash_diff:
                    self._diff_hash.update(data)
                item = data or None
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is None or isinstance(item, BaseException) or self._stop.is_set():
                return

    def close(self) -> None:
        """Stop the helper thread (idempotent)."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> LayerReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _more(self) -> bool:
        item = self._queue.get()
        if item is None:
            self._eof = True
            self._thread.join()
            return False
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        rest = self._buf[self._off:]
        self._buf = rest + item if rest else item
        self._off = 0
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts: list[bytes] = []
            while True:
                chunk = self.read(CHUNK)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        while len(self._buf) - self._off < size and not self._eof:
            self._more()
        out = self._buf[self._off:self._off + size]
        self._off += len(out)
        self._pos += len(out)
        return out

    def read_view(self, limit: int) -> memoryview:
        """Up to ``limit`` bytes without copying (for file data); empty at end of stream."""
        if self._off >= len(self._buf):
            self._buf, self._off = b"", 0
            if self._eof or not self._more():
                return memoryview(b"")
        avail = min(limit, len(self._buf) - self._off)
        view = memoryview(self._buf)[self._off:self._off + avail]
        self._off += avail
        self._pos += avail
        return view

    @property
    def exhausted(self) -> bool:
        """True once every byte of the stream has been read."""
        return self._eof and self._off >= len(self._buf)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise ImageError("corrupt tar stream: seek from the end")
        if pos < self._pos:
            raise ImageError("corrupt tar stream: a header points backwards")
        while pos > self._pos:
            if not self.read_view(pos - self._pos):
                break
        return self._pos

    def drain(self) -> bool:
        """Read to the end; True when everything left was zero bytes (tar end padding)."""
        clean = True
        while True:
            view = self.read_view(CHUNK)
            if not view:
                return clean
            if clean and bytes(view).strip(b"\0"):
                clean = False

    @property
    def blob_digest(self) -> str:
        return "sha256:" + self._src.hash.hexdigest()

    @property
    def blob_size(self) -> int:
        return self._src.size

    @property
    def diff_digest(self) -> str:
        if self._dec is self._src:
            return self.blob_digest
        return "sha256:" + self._diff_hash.hexdigest()
