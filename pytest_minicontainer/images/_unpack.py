"""Unpack one layer tar into one directory, in overlayfs's on-disk format: the entry point.

:func:`unpack_layer` reads the stream (plain, gzip or zstd, digests of both as it goes, see
``_stream``), bounds what a layer may unpack to (a decompression bomb would otherwise fill the
disk) and hands each member to :class:`._unpacker.Unpacker`, whose module sets out the rules:
whiteouts recorded, owners given or returned, names kept inside the layer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from ..errors import ImageError
from ._stream import LayerReader
from ._tar import Member, TarReader
from ._unpacker import OPAQUE_XATTR, Unpacker, normalise_member

__all__ = ["MAX_LAYER_ENV", "OPAQUE_XATTR", "UnpackResult", "max_layer_size", "normalise_member", "unpack_layer"]


@dataclass(frozen=True)
class UnpackResult:
    """Digests of what was read: the blob (as stored) and the uncompressed tar (diff id)."""

    blob_digest: str
    diff_digest: str
    blob_size: int
    compression: str
    entries: int
    # (path relative to the layer, uid, gid) of entries not owned by root in the tar, whose
    # owner this process could not give (unprivileged); they are the user's meanwhile
    owners: tuple[tuple[str, int, int], ...] = ()


#: The environment variable bounding what one layer may unpack to, where no Engine says
#: otherwise (the plugin passes ini key ``minicontainer_max_layer_size`` as ``Engine(max_layer_size=)``).
MAX_LAYER_ENV = "MINICONTAINER_MAX_LAYER_SIZE"
DEFAULT_MAX_LAYER = 32 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_layer_size(environ: Mapping[str, str] | None = None) -> int:
    """Bytes one layer may unpack to: ``$MINICONTAINER_MAX_LAYER_SIZE`` (``512M``, ``64G``...) or 32 GiB.

    Docker sets no bound, and a small gzip bomb then fills the disk.  32 GiB is above any
    real layer; a user with a larger one raises it.
    """
    value = (os.environ if environ is None else environ).get(MAX_LAYER_ENV, "").strip().upper().removesuffix("B")
    if not value:
        return DEFAULT_MAX_LAYER
    number, unit = (value[:-1], value[-1]) if value[-1] in _UNITS else (value, "")
    if not number.isdigit() or int(number) <= 0:
        raise ImageError(f"{MAX_LAYER_ENV}={value!r} is not a size: give bytes or a number with K, M, G or T "
                         f"(e.g. {MAX_LAYER_ENV}=64G), or unset it for the default of 32G")
    return int(number) * _UNITS[unit]


def unpack_layer(blob: IO[bytes], dest: str | os.PathLike[str], *, source: str,
                 is_root: bool | None = None, lowers: Sequence[str] = (),
                 on_entry: Callable[[Member], None] | None = None, layer: bool = True,
                 limit: int | None = None) -> UnpackResult:
    """Unpack the tar (plain, gzip or zstd) read from ``blob`` into the empty directory ``dest``.

    ``lowers`` are the unpacked parent layers (bottom first): their symlinked directories are
    followed the way Docker applies a layer onto its parents (the result then depends on them:
    the store keys such layers by chain id).  ``layer=False`` reads a plain archive, as a
    Containerfile's ``ADD`` extracts one: ``.wh.`` names are ordinary files, and absolute
    names (and hard-link targets) lose their leading "/" instead of being refused.

    ``limit`` is how many bytes the layer may unpack to (None: :func:`max_layer_size`, the
    environment's; the Engine passes its own ``max_layer_size``).

    ``source`` names the blob in error messages.  Raises :class:`ImageError` for a corrupt
    or hostile layer; ``dest`` is then in an undefined state and must be discarded (the
    store unpacks into a temporary directory for this reason).  OSError from the
    filesystem (ENOSPC...) is passed through for the caller to report.
    """
    root = os.fspath(dest)
    un = Unpacker(root, source, is_root=os.geteuid() == 0 if is_root is None else is_root, lowers=lowers,
                  layer=layer)
    try:
        with LayerReader(blob) as reader:
            _unpack_members(un, TarReader(reader, source), reader, on_entry,
                            max_layer_size() if limit is None else limit)
    except ImageError as exc:
        if exc.path is None:  # from the decompressor: say which blob
            raise ImageError(str(exc), path=source) from None
        raise
    return UnpackResult(reader.blob_digest, reader.diff_digest, reader.blob_size,
                        reader.compression, un.entries,
                        tuple((rel, uid, gid) for rel, (uid, gid) in un.owners.items()))


def _unpack_members(un: Unpacker, tar: TarReader, reader: LayerReader,
                    on_entry: Callable[[Member], None] | None, limit: int) -> None:
    total = 0
    while (info := tar.next()) is not None:
        total += info.size + 512  # what the files hold, and a header's worth for each entry
        if total > limit:
            shown = f"{limit / (1 << 30):g} GiB" if limit >= 1 << 30 else f"{limit / (1 << 20):g} MiB"
            raise ImageError(f"the layer unpacks to more than {shown}, the limit (a corrupt layer, "
                             f"or a decompression bomb); if it is real, raise the limit: {MAX_LAYER_ENV}=64G "
                             "(ini minicontainer_max_layer_size)", path=un.source)
        if on_entry is not None:
            on_entry(info)
        try:
            un.entry(reader, info)
        except ImageError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise un.fail(info.name, f"cannot create it: {exc.strerror or exc}") from None
        un.entries += 1
    if un.entries == 0 and reader.tell() == 0:
        raise ImageError("not a valid tar layer: the stream is empty", path=un.source)
    reader.drain()  # the digests cover every byte, end blocks and trailing data included
    un.finish_dirs()
