"""PACS credentials: from environment variables or a file, never from the command line, never logged.

Sources, first match wins:

1. ``MEDSEG_PACS_TOKEN``: a bearer token (``Authorization: Bearer <token>``);
2. ``MEDSEG_PACS_USER`` + ``MEDSEG_PACS_PASSWORD``: HTTP basic authentication;
3. a credentials file (``--auth-file FILE`` or ``MEDSEG_PACS_AUTH_FILE``): JSON, either
   ``{"token": "..."}`` or ``{"username": "...", "password": "..."}``; it must not be readable by other
   users (mode ``0600`` or stricter), as for ``~/.netrc``.

No credentials = anonymous requests. A URL with ``user:password@`` in it is refused (it would end up in
shell history and process lists). :class:`Credentials` never shows its secret in ``repr``/``str``; the
only text about it meant for users or logs is :meth:`Credentials.describe` (kind and where it came from).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from napari_medseg.errors import PacsError

ENV_TOKEN = "MEDSEG_PACS_TOKEN"
ENV_USER = "MEDSEG_PACS_USER"
ENV_PASSWORD = "MEDSEG_PACS_PASSWORD"
ENV_AUTH_FILE = "MEDSEG_PACS_AUTH_FILE"


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "<bearer token>"


@dataclass(frozen=True)
class Credentials:
    """``kind`` is ``"none"``, ``"basic"`` or ``"bearer"``; ``origin`` says where they came from."""

    kind: str = "none"
    origin: str = ""
    username: str = ""
    _secret: str = field(default="", repr=False)

    def requests_auth(self) -> requests.auth.AuthBase | None:
        """The ``requests`` auth object (``None`` for anonymous access)."""
        if self.kind == "basic":
            return requests.auth.HTTPBasicAuth(self.username, self._secret)
        if self.kind == "bearer":
            return _Bearer(self._secret)
        return None

    def describe(self) -> str:
        """Safe to show: e.g. ``basic auth as 'medseg' (from MEDSEG_PACS_USER/MEDSEG_PACS_PASSWORD)``."""
        if self.kind == "basic":
            return f"basic auth as {self.username!r} (from {self.origin})"
        if self.kind == "bearer":
            return f"bearer token (from {self.origin})"
        return "no credentials"

    def __str__(self) -> str:
        return self.describe()


def _from_file(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as err:
        raise PacsError(f"cannot read the PACS credentials file {path} ({err.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PacsError(
            f"the PACS credentials file {path} is readable by other users; run 'chmod 600 {path}'"
        )
    try:
        content = json.loads(text)
    except ValueError:
        content = None
    if not isinstance(content, dict):
        raise PacsError(
            f'{path} is not a credentials file: write {{"token": "..."}} or {{"username": "...", "password": "..."}}'
        )
    origin = f"file {path}"
    token = content.get("token")
    if isinstance(token, str) and token:
        return Credentials("bearer", origin, "", token)
    user, password = content.get("username"), content.get("password")
    if isinstance(user, str) and user and isinstance(password, str):
        return Credentials("basic", origin, user, password)
    raise PacsError(f'{path} holds neither a "token" nor a "username" and "password"')


def load_credentials(
    auth_file: str | Path | None = None, environ: dict[str, str] | None = None
) -> Credentials:
    """Credentials from the environment or ``auth_file`` (see the module docstring for the order).

    Raises:
        PacsError: a half-set pair (user without password), an unreadable, malformed or world-readable file.
    """
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN, "")
    if token:
        return Credentials("bearer", ENV_TOKEN, "", token)
    user, password = env.get(ENV_USER, ""), env.get(ENV_PASSWORD)
    if user or password:
        if not user or password is None:
            raise PacsError(f"set both {ENV_USER} and {ENV_PASSWORD} for HTTP basic authentication")
        return Credentials("basic", f"{ENV_USER}/{ENV_PASSWORD}", user, password)
    path = auth_file or env.get(ENV_AUTH_FILE, "")
    if path:
        return _from_file(Path(path).expanduser())
    return Credentials()


def check_url(url: str) -> str:
    """A DICOMweb base URL without a trailing slash; refuses credentials inside it and non-HTTP schemes."""
    url = str(url).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(
            f"the PACS URL must start with http:// or https:// and name a host, not {safe_url(url)!r}"
        )
    if parts.username or parts.password:
        raise PacsError(
            f"do not put credentials in the PACS URL; set {ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN} "
            "or use a credentials file"
        )
    return url


def safe_url(url: str) -> str:
    """``url`` with any ``user:password@`` part and query string removed (for messages and records)."""
    parts = urlsplit(str(url))
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        return "<invalid URL>"
    if not parts.hostname:
        return "<invalid URL>"
    host = parts.hostname + (f":{port}" if port else "")
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")
