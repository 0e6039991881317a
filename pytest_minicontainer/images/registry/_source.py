"""A registry repository seen as an image :class:`~.._source.Source`.

The OCI layout reader (:func:`.._oci.manifest_plan`) asks a source for ``blobs/sha256/<hex>``;
answering that from a registry lets pulls reuse the layout's platform choice, verification and
layer import instead of repeating them.  Manifests and blobs live at different API paths, so
the source remembers which digests are manifests (the one named by the reference and the
entries of any index it fetched).  What the store already holds (manifests, configs) is read
from the store, and layers already unpacked are never opened at all (see ``import_layer``).

Blobs are streamed to a file in the store's ``tmp/`` (owned by this process, so a killed pull
leaves only a tmp dir that the next pull or ``prune`` removes), hashed while written, and
handed out only when the sha256 matches; a mismatch deletes the file.  The file is unlinked as
soon as it is opened: the open descriptor keeps the data for the unpacker.

The digest is only known to be wrong once the last byte is in, so the ``size`` of the blob's
descriptor (in the manifest that names it) is enforced while downloading: a registry that
announces or sends more than that is stopped at once, instead of filling the disk first.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import IO, Any

from ...errors import ImageError, ImageNotFound, RegistryError
from ...store import Store
from .. import _mediatypes as mt
from ._client import RETRYABLE_ERRORS, RegistryClient, Response, timeout_hint
from ._reference import RegistryRef

__all__ = ["ACCEPT", "Progress", "RegistrySource"]

Progress = Callable[[str, int, "int | None"], None]  # (digest, bytes so far, total or None)
ACCEPT = ", ".join((mt.OCI_INDEX, mt.DOCKER_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST))
_MAX_MANIFEST = 4 << 20
_CHUNK = 1 << 20


class RegistrySource:
    def __init__(self, client: RegistryClient, ref: RegistryRef, store: Store,
                 progress: Progress | None = None) -> None:
        self.client = client
        self.ref = ref
        self.store = store
        self.progress = progress
        self.name = f"{ref} (registry {client.endpoint})"
        self._fetched: dict[str, bytes] = {}
        self._manifests: set[str] = set()
        self._sizes: dict[str, int] = {}  # digest -> size, from the descriptors of the manifests read

    # -- the Source protocol ----------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return rel.startswith("blobs/sha256/")  # absence on the registry is reported by open()

    def open(self, rel: str) -> IO[bytes]:
        digest = "sha256:" + rel.rsplit("/", 1)[-1]
        if digest in self._fetched:
            return io.BytesIO(self._fetched[digest])
        if digest in self._manifests and self.store.blob_path(digest).exists():
            # Read (small) and remembered like a fetched one: its layers' sizes are needed.
            data = self.store.blob_path(digest).read_bytes()  # verified again by read_blob
            self._remember(digest, data)
            return io.BytesIO(data)
        if self.store.blob_path(digest).exists():
            return open(self.store.blob_path(digest), "rb")  # verified again by read_blob
        if digest in self._manifests:
            return io.BytesIO(self._manifest(digest))
        return self._download(digest)

    def close(self) -> None:
        pass

    # -- manifests --------------------------------------------------------------------------
    def top(self) -> dict[str, Any]:
        """The descriptor of what the reference names (fetched now: a tag moves)."""
        data, media_type, digest = self._fetch_manifest(self.ref.reference)
        if self.ref.digest and digest != self.ref.digest:
            raise ImageError(f"registry {self.client.endpoint} sent a manifest whose digest is {digest},"
                             f" not the {self.ref.digest} that was asked for", path=str(self.ref))
        self._remember(digest, data)
        return {"digest": digest, "mediaType": media_type, "size": len(data)}

    def _manifest(self, digest: str) -> bytes:
        data, _, actual = self._fetch_manifest(digest)
        if actual != digest:
            raise ImageError(f"manifest {digest} from registry {self.client.endpoint} does not match its"
                             f" digest (content is {actual})", path=str(self.ref))
        self._remember(digest, data)
        return data

    def _remember(self, digest: str, data: bytes) -> None:
        self._fetched[digest] = data
        try:
            doc = json.loads(data)
        except ValueError:
            return  # manifest_plan reports it with context
        if not isinstance(doc, dict):
            return
        manifests: list[Any] = doc["manifests"] if isinstance(doc.get("manifests"), list) else []
        layers: list[Any] = doc["layers"] if isinstance(doc.get("layers"), list) else []
        for entry in [*manifests, doc.get("config"), *layers]:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            size = entry.get("size")
            if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
                self._sizes.setdefault(entry["digest"], size)
        for entry in manifests:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                self._manifests.add(entry["digest"])

    def _fetch_manifest(self, reference: str) -> tuple[bytes, str, str]:
        with self.client.get(f"manifests/{reference}", {"Accept": ACCEPT}) as resp:
            self._check(resp, f"manifest {reference}")
            data = resp.read_body(_MAX_MANIFEST + 1)
        if len(data) > _MAX_MANIFEST:
            raise ImageError(f"manifest {reference} is larger than {_MAX_MANIFEST >> 20} MiB", path=self.name)
        media_type = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        return data, media_type, "sha256:" + hashlib.sha256(data).hexdigest()

    def _check(self, resp: Response, what: str) -> None:
        where = f"registry {self.client.endpoint}"
        if resp.status == 200:
            return
        if resp.status == 404:
            raise ImageNotFound(str(self.ref), f"{self.ref}: {what} not found on {where}"
                                               " (unknown repository, tag or digest)")
        if resp.status in (401, 403):
            raise ImageNotFound(str(self.ref), f"{self.ref}: access to {what} denied by {where} (HTTP"
                                               f" {resp.status}): the repository does not exist or needs"
                                               " credentials (~/.docker/config.json or $REGISTRY_AUTH_FILE)")
        raise RegistryError(f"{self.ref}: {where} answered HTTP {resp.status} for {what}",
                            registry=self.client.endpoint)

    # -- blobs ------------------------------------------------------------------------------
    def _download(self, digest: str) -> IO[bytes]:
        tmp = self.store.new_tmp_dir("blob-")
        path = tmp / "blob"
        try:
            actual = self._fetch_blob(digest, path)
            if actual != digest:
                raise ImageError(f"blob {digest} from registry {self.client.endpoint} does not match its digest"
                                 f" (content is {actual}); the download was discarded", path=str(self.ref))
            return open(path, "rb")  # the caller closes it
        finally:
            self.store.discard_tmp(tmp)

    def _fetch_blob(self, digest: str, path: Any) -> str:
        """Download into ``path``, resuming with ``Range`` after a dropped connection; the sha256.

        At most the descriptor's ``size`` bytes are accepted (see the module docstring).
        """
        hasher = hashlib.sha256()
        done = 0
        size = self._sizes.get(digest)
        attempts = self.client.options.retries + 1
        with open(path, "wb") as out:
            for attempt in range(attempts):
                headers = {"Range": f"bytes={done}-"} if done else {}
                with self.client.get(f"blobs/{digest}", headers) as resp:
                    if resp.status == 200 and done:  # the server ignored Range: start over
                        out.seek(0)
                        out.truncate()
                        hasher, done = hashlib.sha256(), 0
                    elif resp.status == 404:
                        raise ImageError(f"registry {self.client.endpoint} lacks blob {digest}, which the image's"
                                         " manifest names (a broken push or a garbage-collected registry)",
                                         path=str(self.ref))
                    elif resp.status != 206 or not done:
                        self._check(resp, f"blob {digest}")
                    length = resp.headers.get("Content-Length")
                    total = done + int(length) if length and length.isdigit() else None
                    if size is not None and total is not None and total != size:
                        raise self._wrong_size(digest, size, f"the registry announced {total} bytes"
                                                             " (Content-Length), so the body was not read")
                    before = done
                    try:
                        # One byte more than the size is asked for, to notice a blob that goes on.
                        while chunk := resp.read1(_CHUNK if size is None else min(_CHUNK, size - done + 1)):
                            out.write(chunk)
                            hasher.update(chunk)
                            done += len(chunk)
                            if size is not None and done > size:
                                raise self._wrong_size(digest, size, f"{done} bytes had arrived when the"
                                                                     " download was stopped")
                            if self.progress is not None:
                                self.progress(digest, done, size if size is not None else total)
                    except RETRYABLE_ERRORS as exc:
                        # A stall is resumed only while it makes progress: an attempt that timed out
                        # without a byte is a registry that stopped answering (see _client).
                        stuck = isinstance(exc, TimeoutError) and done == before
                        if attempt + 1 == attempts or stuck:
                            raise self._broken_download(digest, done, exc, stuck) from exc
                        continue
                    expected = size if size is not None else total
                    if expected is None or done >= expected:
                        break
        return "sha256:" + hasher.hexdigest()

    def _broken_download(self, digest: str, done: int, exc: BaseException, stuck: bool) -> RegistryError:
        where = f"registry {self.client.endpoint}"
        timeout = self.client.options.timeout
        if stuck:
            return RegistryError(f"{where} stopped sending blob {digest} after {done} bytes: nothing came for"
                                 f" {timeout:g}s; check that registry, or {timeout_hint(timeout)}",
                                 registry=self.client.endpoint)
        hint = f"; {timeout_hint(timeout)}" if isinstance(exc, TimeoutError) else ""
        return RegistryError(f"{where} kept dropping the download of blob {digest} ({exc or type(exc).__name__};"
                             f" {done} bytes arrived){hint}", registry=self.client.endpoint)

    def _wrong_size(self, digest: str, size: int, received: str) -> ImageError:
        return ImageError(f"blob {digest} from registry {self.client.endpoint} is not the {size} bytes the image's"
                          f" manifest gives: {received}; the download was discarded (the registry's copy is"
                          " damaged: push the image again)", path=str(self.ref))
