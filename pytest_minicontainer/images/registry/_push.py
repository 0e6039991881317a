"""Uploads to one repository of a registry: blobs (skipped, mounted or sent) and manifests.

The OCI distribution spec's order: every blob first, the manifest last, so a registry never
holds a manifest naming a blob it lacks.  A blob the repository has already (``HEAD``) is not
sent; one that another repository of the same registry holds is *mounted* (``POST
?mount=&from=``: the registry links it, nothing travels); anything else is uploaded, in one
``PUT`` when small, else in ``PATCH`` chunks closed by a ``PUT``.  A blob upload that breaks
(reset, 5xx, 429) starts again from its first byte, a few times with a growing wait: an
upload session cannot be trusted after a failure, and re-sending one blob is cheap next to
guessing which bytes a registry kept.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import time
import urllib.parse
from collections.abc import Callable, Iterable

from ...errors import RegistryError
from ._client import Body, RegistryClient, Response
from ._source import Progress

__all__ = ["CHUNK_SIZE", "Uploader"]

CHUNK_SIZE = 32 << 20  # bigger blobs go in PATCH chunks of this size
_ERROR_BODY = 4096


class _Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a file, read from a descriptor of its own."""

    def __init__(self, path: str, start: int, size: int, seen: Callable[[int], None]) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._f.seek(start)
        self._left = size
        self._seen = seen

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        self._seen(len(data))
        return data

    def close(self) -> None:
        self._f.close()
        super().close()


def _problem(resp: Response, what: str, endpoint: str) -> RegistryError:
    """A RegistryError for an unexpected answer, with the registry's own error text."""
    try:
        body = resp.read_body(_ERROR_BODY).decode("utf-8", "replace").strip()
    except RegistryError:
        body = ""
    finally:
        resp.close()
    hint = ""
    if resp.status in (401, 403):
        hint = (f"; the registry refused to let these credentials push: log in with push rights"
                f" (`docker login {endpoint}`), or check the repository name")
    elif resp.status == 404:
        hint = "; the registry does not know this repository or upload (is it a read-only mirror?)"
    detail = f": {body[:500]}" if body else ""
    return RegistryError(f"registry {endpoint} answered {what} with HTTP {resp.status}{detail}{hint}",
                         registry=endpoint)


class Uploader:
    """Blob and manifest uploads to ``client``'s repository."""

    def __init__(self, client: RegistryClient, progress: Progress | None = None,
                 chunk_size: int = CHUNK_SIZE) -> None:
        client.actions = "pull,push"
        self.client = client
        self.progress = progress
        self.chunk_size = chunk_size
        self.sent = 0  # blob bytes that travelled
        self.uploads = 0  # blobs sent, not skipped or mounted

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    def has_blob(self, digest: str) -> bool:
        """``HEAD /v2/<name>/blobs/<digest>``: does the repository hold it?"""
        resp = self.client.call("HEAD", f"blobs/{digest}")
        if resp.status in (200, 404):
            resp.close()
            return resp.status == 200
        raise _problem(resp, f"HEAD of blob {digest}", self.endpoint)

    def mount(self, digest: str, sources: Iterable[str]) -> bool:
        """Link ``digest`` from another repository of this registry; True when it was mounted."""
        for repo in sources:
            if repo == self.client.repository:
                continue
            query = urllib.parse.urlencode({"mount": digest, "from": repo})
            resp = self.client.call("POST", f"blobs/uploads/?{query}", {"Content-Length": "0"}, body=b"")
            status = resp.status
            location = resp.headers.get("Location")
            resp.close()
            if status == 201:
                return True
            if status == 202 and location:  # not mountable from there: the registry opened an upload instead
                self._cancel(location)
        return False

    def _cancel(self, location: str) -> None:
        with contextlib.suppress(RegistryError):  # an abandoned upload session expires on its own
            self.client.call("DELETE", location, retries=0).close()

    def upload(self, digest: str, size: int, path: str) -> None:
        """Send the file ``path`` as blob ``digest``, again from its start if the transfer broke."""
        opts = self.client.options
        for attempt in range(opts.retries + 1):
            try:
                self._upload_once(digest, size, path)
                self.uploads += 1
                return
            except _Retry as exc:
                if attempt == opts.retries:
                    raise RegistryError(f"registry {self.endpoint}: the upload of blob {digest} failed"
                                        f" {attempt + 1} times (last: {exc})", registry=self.endpoint) from None
                time.sleep(min(opts.backoff * 2 ** attempt, opts.max_wait))

    def _start(self) -> str:
        """``POST /v2/<name>/blobs/uploads/``: a new upload session's location."""
        resp = self.client.call("POST", "blobs/uploads/", {"Content-Length": "0"}, body=b"")
        location = resp.headers.get("Location")
        if resp.status != 202 or not location:
            raise _problem(resp, "the start of a blob upload", self.endpoint)
        resp.close()
        return location

    def _upload_once(self, digest: str, size: int, path: str) -> None:
        location = self._start()
        done = 0

        def seen(n: int) -> None:
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress(digest, done, size)

        offset = 0
        if size > self.chunk_size:
            while offset < size:
                n = min(self.chunk_size, size - offset)
                start = offset
                resp = self._send("PATCH", location, {
                    "Content-Type": "application/octet-stream", "Content-Length": str(n),
                    "Content-Range": f"{start}-{start + n - 1}",
                }, functools.partial(_Window, path, start, n, seen))
                if resp.status != 202:
                    raise self._failed(resp, f"PATCH of blob {digest} bytes {start}-{start + n - 1}")
                location = resp.headers.get("Location") or location
                resp.close()
                offset += n
                self.sent += n
            body: Body = b""
            length = 0
        else:
            body = functools.partial(_Window, path, 0, size, seen)
            length = size
        resp = self._send("PUT", _with_digest(location, digest), {
            "Content-Type": "application/octet-stream", "Content-Length": str(length)}, body)
        if resp.status != 201:
            raise self._failed(resp, f"PUT of blob {digest}")
        resp.close()
        self.sent += length

    def _send(self, method: str, location: str, headers: dict[str, str], body: Body) -> Response:
        try:
            return self.client.call(method, location, headers, body=body, retries=0)
        except RegistryError as exc:
            if exc.unreachable:
                raise _Retry(str(exc)) from exc
            raise

    def _failed(self, resp: Response, what: str) -> Exception:
        if resp.status >= 500 or resp.status == 429:
            resp.close()
            return _Retry(f"HTTP {resp.status} to {what}")
        return _problem(resp, what, self.endpoint)

    def push_bytes(self, data: bytes) -> str:
        """A small blob (a config) from memory, unless the repository has it; its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            location = self._start()
            resp = self.client.call("PUT", _with_digest(location, digest), {
                "Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, body=data)
            if resp.status != 201:
                raise _problem(resp, f"PUT of blob {digest}", self.endpoint)
            resp.close()
        return digest

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        """``PUT /v2/<name>/manifests/<reference>``; the manifest's digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = self.client.call("PUT", f"manifests/{reference}",
                                {"Content-Type": media_type, "Content-Length": str(len(data))}, body=data)
        if resp.status not in (200, 201):
            raise _problem(resp, f"PUT of manifest {reference}", self.endpoint)
        answered = resp.headers.get("Docker-Content-Digest")
        resp.close()
        if answered and answered != digest:
            raise RegistryError(f"registry {self.endpoint} stored manifest {reference} as {answered}, but its"
                                f" content is {digest}: the registry changed it", registry=self.endpoint)
        return digest


class _Retry(Exception):
    """A transfer fault worth starting the blob again for."""


def _with_digest(location: str, digest: str) -> str:
    sep = "&" if "?" in location else "?"
    return f"{location}{sep}{urllib.parse.urlencode({'digest': digest})}"
