"""Credentials: find them in a URI, keep them out of logs and artifacts, refuse them in settings.

A URI's userinfo (``scheme://user:password@host``) is a credential wherever it appears; the
secret variables of this process (``SECRET_ENV``) are too. ``redact`` removes both from a log line;
``without_userinfo`` removes the first from every string of an artifact (JSON) before it is written;
``refuse_credentials`` refuses settings that hold any, since every step logs its settings.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from typing import Any

from padirec.core.tracker import flatten
from padirec.errors import PadirecError

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME")
# scheme://userinfo@ : the userinfo runs to the last "@" before the path (a password may hold "@").
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without userinfo, user, password)`` of ``scheme://user:password@host/...``
    (percent-decoded); ``(uri, None, None)`` when the URI has no userinfo."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme or "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return clean, urllib.parse.unquote(user) or None, urllib.parse.unquote(password) if sep else None


def secret_values() -> list[str]:
    """The credentials of this process: every secret variable that is set, and the userinfo of
    ``MLFLOW_TRACKING_URI`` (raw and decoded). Values under 4 characters are left out: replacing
    them would garble every log line."""
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    _, user, password = split_userinfo(uri)
    values += [user or "", password or ""]
    netloc = urllib.parse.urlsplit(uri).netloc
    values += netloc.rpartition("@")[0].split(":", 1) if "@" in netloc else []
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def has_userinfo(text: str) -> bool:
    """Whether ``text`` holds a URL with userinfo (``scheme://user:password@host``)."""
    return bool(_USERINFO.search(str(text)))


def redact(text: str) -> str:
    """Remove credentials from a string before it is logged anywhere: the userinfo of every URL
    (``scheme://***@host``), and the value of every credential of this process (``secret_values``)."""
    text = _USERINFO.sub(r"\1***@", str(text))
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def without_userinfo(obj: Any) -> Any:
    """``obj`` (JSON-able) with the userinfo of every URL in its strings replaced by ``***``: what
    an artifact may hold. Only URIs: a secret variable's value may be an ordinary word (a user name
    such as ``padirec``) that the artifact needs."""
    if isinstance(obj, str):
        return _USERINFO.sub(r"\1***@", obj)
    if isinstance(obj, dict):
        return {k: without_userinfo(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [without_userinfo(v) for v in obj]
    return obj


def refuse_credentials(settings: dict[str, Any]) -> None:
    """No setting may hold a URI with credentials: the settings are logged by every step."""
    for key, value in flatten(settings).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if has_userinfo(text):
            raise PadirecError(f"{key}: {redact(text)} holds credentials; give them in the environment "
                               "(MLFLOW_TRACKING_USERNAME/PASSWORD, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
                               "never in the config, which every step logs")
