"""HTTP for one repository on one registry: scheme, auth, retries and redirects.

Written on :mod:`http.client` rather than :mod:`urllib.request` because the rules need control
that urllib hides: a redirect to another host must lose the ``Authorization`` header (a blob
redirect to a CDN or S3 must never see the registry token), 429 answers carry ``Retry-After``,
and a 401 must be answered by running the challenge's token flow once, then retrying.

Plain HTTP is used only for loopback registries and those the user lists as insecure, and
even then HTTPS (unverified) is tried first, as Podman does, so a local TLS registry works.

Retries are for faults that pass: a reset connection, 5xx, 429.  A request that got no answer
at all within ``options.timeout`` is not sent again (nor over plain HTTP after the HTTPS
probe): a registry that accepts connections and never answers would otherwise cost the
timeout once per attempt and scheme, minutes in all, before the test even starts.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ...errors import RegistryError
from ._auth import Credentials, basic_header, find_credentials_in, parse_challenge, token_from
from ._options import TIMEOUT_ENV, RegistryOptions
from ._reference import is_loopback

__all__ = ["RETRYABLE_ERRORS", "Body", "RegistryClient", "Response", "timeout_hint"]

# What a request sends: bytes, or a callable opening the body afresh for every attempt (a
# blob from a file: the first attempt may have consumed part of it before a reset).
class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


Body = bytes | Callable[[], Readable] | None

_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 10
# Errors of a connection that did answer, then broke: worth another attempt (a blob download
# resumes with Range after any of them, a stalled body included).
RETRYABLE_ERRORS = (TimeoutError, socket.timeout, ConnectionResetError, http.client.RemoteDisconnected,
                    http.client.IncompleteRead, BrokenPipeError)
# Before an answer: these pass (a keep-alive race, a restarting proxy); a timeout does not.
_RESET_ERRORS = (ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead,
                 BrokenPipeError)


def timeout_hint(timeout: float) -> str:
    """The fix for a registry that is slow rather than dead: give each request more time."""
    return f"set {TIMEOUT_ENV} to more seconds per request (now {timeout:g})"


class Response:
    """A response whose body is still on the wire; ``close`` closes the connection too."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.url = url

    def read(self, n: int = -1) -> bytes:
        return self._resp.read(n)

    def read1(self, n: int) -> bytes:
        """What has arrived, up to ``n`` bytes: a timeout later loses nothing already received,
        so a stalled download resumes (``Range``) from the last byte instead of from zero."""
        return self._resp.read1(n)

    def read_body(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of a small body (manifest, token); a broken transfer is a RegistryError.

        Only blob downloads resume after a break; for these few bytes the caller's message
        must still name the registry instead of surfacing a bare ``TimeoutError``.
        """
        try:
            return self._resp.read(limit)
        except RETRYABLE_ERRORS as exc:
            host = urllib.parse.urlsplit(self.url).netloc
            timeout = self._conn.timeout if isinstance(self._conn.timeout, (int, float)) else 0.0
            hint = f"; {timeout_hint(timeout)}" if isinstance(exc, TimeoutError) else ""
            raise RegistryError(f"registry {host} stopped sending its answer to GET {self.url}"
                                f" ({exc or type(exc).__name__}){hint}", registry=host) from exc

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RegistryClient:
    """Requests to ``endpoint`` (``host[:port]``) on behalf of ``repository`` (for token scopes)."""

    def __init__(self, endpoint: str, repository: str, options: RegistryOptions,
                 credentials_for: str | None = None) -> None:
        self.endpoint = endpoint
        self.repository = repository
        self.options = options
        self.plain_http = is_loopback(endpoint) or endpoint in options.insecure
        self.scheme = ""  # decided by ping()
        self.actions = "pull"  # the token scope asked for: "pull,push" to push
        self._auth: str | None = None
        self._creds_for = credentials_for or endpoint
        found = find_credentials_in(self._creds_for)
        self._creds: Credentials | None = found[0] if found else None
        self._creds_file: Path | None = found[1] if found else None

    @property
    def base(self) -> str:
        return f"{self.scheme or 'https'}://{self.endpoint}"

    # -- one attempt, then retries, then redirects ----------------------------------------
    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "https":
            ctx = ssl.create_default_context()
            if is_loopback(host) or host in self.options.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, timeout=self.options.timeout, context=ctx), path or "/"
        if parts.scheme == "http" and (is_loopback(host) or host in self.options.insecure):
            return http.client.HTTPConnection(host, timeout=self.options.timeout), path or "/"
        raise RegistryError(f"refusing to contact {url}: plain HTTP is allowed only for loopback registries"
                            " and those listed in MINICONTAINER_INSECURE_REGISTRIES", registry=host)

    def _once(self, method: str, url: str, headers: Mapping[str, str], body: Body = None) -> Response:
        conn, path = self._connect(url)
        stream = body() if callable(body) else None
        try:
            conn.request(method, path, body=stream if stream is not None else body,  # type: ignore[arg-type]
                         headers=dict(headers))
            return Response(conn, conn.getresponse(), url)
        except BaseException:
            conn.close()
            raise
        finally:
            if stream is not None:
                stream.close()

    def _retrying(self, method: str, url: str, headers: Mapping[str, str], retries: int | None = None,
                  body: Body = None) -> Response:
        retries = self.options.retries if retries is None else retries
        host = urllib.parse.urlsplit(url).netloc
        for attempt in range(retries + 1):
            wait = min(self.options.backoff * 2 ** attempt, self.options.max_wait)
            try:
                resp = self._once(method, url, headers, body)
            except ssl.SSLError:
                raise
            except TimeoutError as exc:  # no answer at all: another attempt would only wait as long again
                raise RegistryError(f"registry {host} sent no answer to {method} {url} within"
                                    f" {self.options.timeout:g}s (it is down, hung or overloaded; the request"
                                    f" was not repeated); check that registry, or {timeout_hint(self.options.timeout)}",
                                    registry=host, unreachable=True) from exc
            except _RESET_ERRORS as exc:
                if attempt == retries:
                    raise RegistryError(f"registry {host} did not answer {method} {url} after"
                                        f" {retries + 1} attempts ({exc or type(exc).__name__})",
                                        registry=host, unreachable=True) from exc
                time.sleep(wait)
                continue
            except OSError as exc:  # refused, no route, unknown host: waiting will not help
                raise RegistryError(f"registry {host} is unreachable ({exc.strerror or exc})"
                                    f" while requesting {url}", registry=host, unreachable=True) from exc
            if (resp.status == 429 or resp.status >= 500) and attempt < retries:
                after = _retry_after(resp.headers.get("Retry-After"))
                resp.close()
                time.sleep(min(after, self.options.max_wait) if after is not None else wait)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None, *,
                auth: bool = True, retries: int | None = None, body: Body = None) -> Response:
        """Send with retries, following redirects; Authorization only to the original host."""
        origin = urllib.parse.urlsplit(url).netloc
        hdrs = dict(headers or {})
        if auth and self._auth:
            hdrs["Authorization"] = self._auth
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._retrying(method, url, hdrs, retries, body)
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or not location or method not in ("GET", "HEAD"):
                return resp
            resp.close()
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).netloc != origin:
                hdrs.pop("Authorization", None)
            if resp.status == 303:
                method = "GET"
        raise RegistryError(f"more than {_MAX_REDIRECTS} redirects from {origin}", registry=origin)

    # -- the registry API -------------------------------------------------------------------
    def ping(self) -> None:
        """``GET /v2/``: pick the scheme, and log in when the registry asks for it."""
        schemes = ["https", "http"] if self.plain_http else ["https"]
        for i, scheme in enumerate(schemes):
            self.scheme = scheme
            try:
                resp = self.request("GET", f"{self.base}/v2/", auth=False,
                                    retries=0 if i + 1 < len(schemes) else None)
            except (ssl.SSLError, RegistryError) as exc:
                # A registry that did not answer HTTPS at all (timed out) is hung, not a plain-HTTP
                # server (that one answers a TLS hello with an HTTP error or a closed connection).
                if i + 1 < len(schemes) and not isinstance(exc.__cause__, TimeoutError):
                    continue
                if isinstance(exc, ssl.SSLError):
                    raise RegistryError(f"registry {self.endpoint}: TLS failed ({exc}); list it in"
                                        " MINICONTAINER_INSECURE_REGISTRIES if it is trusted",
                                        registry=self.endpoint) from exc
                raise
            break
        with resp:
            status, challenge = resp.status, resp.headers.get("WWW-Authenticate", "")
        if status == 401 and challenge:
            self.authenticate(challenge)
        elif status == 404:
            raise RegistryError(f"{self.base} is not a registry (GET /v2/ answered 404)", registry=self.endpoint)
        elif status >= 400 and status != 401:
            raise RegistryError(f"registry {self.endpoint} answered GET /v2/ with HTTP {status}",
                                registry=self.endpoint)

    def authenticate(self, challenge: str) -> None:
        """Answer a ``WWW-Authenticate`` challenge: Basic with credentials, or Bearer's token flow."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self._creds is None:
                raise RegistryError(f"registry {self.endpoint} wants a user name and password; add them to"
                                    " ~/.docker/config.json or $REGISTRY_AUTH_FILE", registry=self.endpoint)
            self._auth = basic_header(self._creds)  # checked by the request it is sent with (see get)
            return
        if scheme != "bearer" or not params.get("realm"):
            raise RegistryError(f"registry {self.endpoint} asks for unsupported authentication {challenge!r}",
                                registry=self.endpoint)
        query = {"scope": params.get("scope") or f"repository:{self.repository}:{self.actions}"}
        if params.get("service"):
            query["service"] = params["service"]
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": basic_header(self._creds)} if self._creds else {}
        with self.request("GET", url, headers, auth=False) as resp:
            body = resp.read_body(1 << 20)
            status = resp.status
        if status in (401, 403):
            if self._creds:
                raise RegistryError(f"the token service {realm} of registry {self.endpoint} refused the"
                                    f" credentials (HTTP {status}) {self._creds_source()}; {self._creds_fix()}",
                                    registry=self.endpoint)
            raise RegistryError(f"the token service {realm} of registry {self.endpoint} refused anonymous"
                                f" access (HTTP {status}); add credentials for {self._creds_for} to"
                                " ~/.docker/config.json or $REGISTRY_AUTH_FILE", registry=self.endpoint)
        if status != 200:
            raise RegistryError(f"the token service {realm} answered HTTP {status}", registry=self.endpoint)
        self._auth = "Bearer " + token_from(body, realm)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        """GET ``/v2/<repository>/<path>``, answering one fresh 401 challenge (expired token, new scope)."""
        return self.call("GET", path, headers)

    def url(self, path: str) -> str:
        """``/v2/<repository>/<path>``, or ``path`` itself when it is a URL (an upload's ``Location``)."""
        if path.startswith(("http://", "https://", "/")):
            return urllib.parse.urljoin(self.base + "/", path)
        return f"{self.base}/v2/{self.repository}/{path}"

    def call(self, method: str, path: str, headers: Mapping[str, str] | None = None, *, body: Body = None,
             retries: int | None = None) -> Response:
        """``method`` on :meth:`url` of ``path``, answering one fresh 401 challenge (expired token, new scope)."""
        url = self.url(path)
        resp = self.request(method, url, headers, body=body, retries=retries)
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status == 401 and challenge and not self._sent_basic():
            resp.close()
            self.authenticate(challenge)
            resp = self.request(method, url, headers, body=body, retries=retries)
        if resp.status == 401 and self._sent_basic():
            # With Basic auth a 401 can only mean the password was refused; reporting it as
            # "not found" would send the user looking for a typo in the image name.
            resp.close()
            raise RegistryError(f"registry {self.endpoint} refused the credentials for {self._creds_for}"
                                f" (HTTP 401 to {method} {url}) {self._creds_source()}; {self._creds_fix()}",
                                registry=self.endpoint)
        return resp

    def _sent_basic(self) -> bool:
        return self._auth is not None and self._auth.startswith("Basic ")

    def _creds_source(self) -> str:
        user = f"user {self._creds[0]!r}" if self._creds else "no user"
        return f"({user}, from {self._creds_file})"

    def _creds_fix(self) -> str:
        return (f"fix or remove the entry for {self._creds_for} in {self._creds_file} (log in again with"
                f" `docker login {self._creds_for}` or `podman login {self._creds_for}`)")
