"""A small, strict, streaming tar reader for layers (ustar, GNU long names, pax).

Why not :mod:`tarfile`: its per-header parsing dominated unpacking time for layers of many
small files, it silently stops at a corrupt header once past the first member, and its
private state (``members``, ``firstmember``) behaves differently across Python versions.
This reader parses one header per member with a few slices, never seeks, and follows Go's
``archive/tar`` (which Docker, containerd and umoci use) where formats are lax: a stream may
end right after the last member's data or at a header boundary without end blocks, and
anything after the end-of-archive zero block is ignored.  GNU sparse files are refused
(no image tool writes them into layers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ImageError
from ._stream import LayerReader

__all__ = ["Member", "TarReader"]

BLOCK = 512
_REG, _AREG, _CONT = b"0", b"\0", b"7"
_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _GPAX, _LONGNAME, _LONGLINK, _SPARSE = b"x", b"g", b"L", b"K", b"S"
_MAX_META = 16 << 20  # pax/long-name payloads are small; refuse absurd ones
_SIGNED = struct.Struct("148b8x356b")


@dataclass
class Member:
    """One archive member, with TarInfo's attribute names."""

    name: str
    type: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: float = 0.0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    offset: int = 0  # of the header, for error messages
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type in (_REG, _AREG, _CONT)

    def isdir(self) -> bool:
        return self.type == _DIR

    def issym(self) -> bool:
        return self.type == _SYM

    def islnk(self) -> bool:
        return self.type == _LNK

    def ischr(self) -> bool:
        return self.type == _CHR

    def isblk(self) -> bool:
        return self.type == _BLK

    def isfifo(self) -> bool:
        return self.type == _FIFO


def _str(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _num(raw: bytes) -> int:
    try:
        return int(raw.strip(b" \0") or b"0", 8)  # the usual "0000644\0": one C call
    except ValueError:
        pass
    if raw[:1] and raw[0] & 0x80:  # GNU base-256
        value = int.from_bytes(raw[1:], "big")
        return value - (1 << (8 * (len(raw) - 1))) if raw[0] == 0xFF else value
    text = raw.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ValueError("malformed pax record")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


class TarReader:
    """Iterate members; the caller reads each regular member's ``size`` bytes of data
    from the same :class:`LayerReader` (or not: unread data is skipped)."""

    def __init__(self, reader: LayerReader, source: str) -> None:
        self.reader = reader
        self.source = source
        self._data_end = 0  # stream position where the current member's data ends
        self._global: dict[str, bytes] = {}
        self.ended = False

    def _error(self, offset: int, problem: str) -> ImageError:
        return ImageError(f"corrupt or truncated tar at offset {offset}: {problem}", path=self.source)

    def _skip_to_header(self) -> bool:
        """Skip unread data and padding; False at a clean end of stream."""
        r = self.reader
        if r.tell() < self._data_end:
            r.seek(self._data_end)
            if r.tell() < self._data_end:
                raise self._error(r.tell(), "file data ends early (truncated)")
        pad = -self._data_end % BLOCK
        if pad:
            got = len(r.read(pad))
            if got == 0 and r.exhausted:
                return False  # ends right after the data, as Go's archive/tar allows
            if got < pad:
                raise self._error(r.tell(), "padding ends early (truncated)")
        return True

    def _payload(self, size: int, offset: int) -> bytes:
        if size > _MAX_META:
            raise self._error(offset, f"extended header of {size} bytes")
        data = self.reader.read(size)
        if len(data) < size:
            raise self._error(offset, "extended header ends early (truncated)")
        self._data_end = self.reader.tell()
        if not self._skip_to_header():
            raise self._error(offset, "archive ends after an extended header")
        return data

    def next(self) -> Member | None:
        if self.ended or not self._skip_to_header():
            self.ended = True
            return None
        pax: dict[str, bytes] = {}
        longname = longlink = None
        while True:
            offset = self.reader.tell()
            buf = self.reader.read(BLOCK)
            if not buf:
                self.ended = True
                return None  # a stream may end at a header boundary
            if len(buf) < BLOCK:
                raise self._error(offset, "header ends early (truncated)")
            if buf.count(0) == BLOCK:
                self.ended = True  # end-of-archive marker; the rest is ignored, as tar does
                return None
            try:
                stored = _num(buf[148:156])
                size = _num(buf[124:136])
            except ValueError:
                stored = size = -1
            if stored != sum(buf) - sum(buf[148:156]) + 256 and stored != sum(_SIGNED.unpack(buf)) + 256:
                raise self._error(offset, "invalid header (bad checksum): not a tar archive, or corrupt")
            kind = buf[156:157]
            if kind in (_PAX, _GPAX, _LONGNAME, _LONGLINK):
                data = self._payload(size, offset)
                try:
                    if kind == _PAX:
                        pax.update(_pax_records(data))
                    elif kind == _GPAX:
                        self._global.update(_pax_records(data))
                    elif kind == _LONGNAME:
                        longname = _str(data)
                    else:
                        longlink = _str(data)
                except ValueError as exc:
                    raise self._error(offset, str(exc)) from None
                continue
            if kind == _SPARSE or any(k.startswith("GNU.sparse.") for k in pax):
                raise self._error(offset, "GNU sparse files are not supported")
            name = _str(buf[0:100])
            if buf[257:263] == b"ustar\0" and buf[345] != 0:
                name = _str(buf[345:500]) + "/" + name
            try:
                m = Member(
                    name=name, type=kind, mode=_num(buf[100:108]) & 0o7777, uid=_num(buf[108:116]),
                    gid=_num(buf[116:124]), size=size, mtime=float(_num(buf[136:148])),
                    linkname=_str(buf[157:257]) if buf[157] else "", offset=offset,
                )
                if kind in (_CHR, _BLK):
                    m.devmajor, m.devminor = _num(buf[329:337]), _num(buf[337:345])
            except ValueError:
                raise self._error(offset, f"invalid number in the header of {name!r}") from None
            break
        if self._global or pax:
            self._apply_pax({**self._global, **pax}, m)
        if longname is not None:
            m.name = longname
        if longlink is not None:
            m.linkname = longlink
        if not m.isreg():
            m.size = 0 if m.type in (_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO) else m.size
        self._data_end = self.reader.tell() + m.size
        return m

    def _apply_pax(self, pax: dict[str, bytes], m: Member) -> None:
        try:
            for key, value in pax.items():
                if key == "path":
                    m.name = value.decode("utf-8", "surrogateescape")
                elif key == "linkpath":
                    m.linkname = value.decode("utf-8", "surrogateescape")
                elif key == "size":
                    m.size = int(value)
                elif key == "uid":
                    m.uid = int(value)
                elif key == "gid":
                    m.gid = int(value)
                elif key == "mtime":
                    m.mtime = float(value)
                elif key.startswith("SCHILY.xattr."):
                    m.xattrs[key[len("SCHILY.xattr."):]] = value
        except ValueError:
            raise self._error(m.offset, f"bad pax value for {key!r}") from None
