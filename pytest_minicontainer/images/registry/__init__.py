"""Pulls from and pushes to OCI distribution registries (Docker Hub, ghcr.io, a local ``docker-registry``).

Standard library only: ``_reference`` normalises names the way Docker does, ``_auth`` reads
credential files and challenges, ``_client`` owns HTTP (scheme, retries, redirects, tokens),
``_source`` makes a repository look like an image source for the layout reader, and ``_pull``
applies the pull policy, the cross-process lock and the mirror fallback.  ``_push`` speaks the
upload protocol, ``_publish`` turns a stored image into blobs and a manifest.  Other packages
(the build's registry cache) import the names below from here.
"""

from __future__ import annotations

from ._client import RegistryClient
from ._options import INSECURE_ENV, MIRROR_ENV, TIMEOUT_ENV, RegistryOptions
from ._publish import LayerPublisher, PushResult, canonical_json, connect, manifest, push_image
from ._pull import PULL_POLICIES, pull_image, stored_image
from ._reference import RegistryRef, parse_registry_ref
from ._source import Progress, RegistrySource

__all__ = ["INSECURE_ENV", "MIRROR_ENV", "PULL_POLICIES", "TIMEOUT_ENV",
           "LayerPublisher", "Progress", "PushResult", "RegistryClient", "RegistryOptions", "RegistryRef",
           "RegistrySource", "canonical_json", "connect", "manifest", "parse_registry_ref", "pull_image",
           "push_image", "stored_image"]
