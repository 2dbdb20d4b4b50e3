"""MLflow's own authentication (``mlflow server --app-name basic-auth``) for padirec's server.

Three users, each with the least it needs (docs/cluster.md, "MLflow authentication"):

- the admin, created by the server itself on its first start (``MLFLOW_AUTH_ADMIN_USERNAME`` and
  ``MLFLOW_AUTH_ADMIN_PASSWORD``, from a Secret);
- the pipeline's steps: EDIT on every experiment and registered model (log runs, register,
  move ``champion``); what they create they also MANAGE;
- serving: READ on every experiment and registered model (load ``champion``), nothing more.

A user without a grant sees nothing (``default_permission = NO_PERMISSIONS``), and a request
without credentials gets 401. ``python -m padirec.tracking.auth write-config PATH`` writes the
server's ``basic_auth.ini`` (users in the tracking database); ``... users`` creates or updates the
two users and their grants as the admin, once the server answers (the ``mlflow-users`` Job);
``... probe URL HOST`` is the Deployment's readiness and liveness check.
Passwords are never printed: every message names users only.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from padirec.core.secrets import redact
from padirec.errors import PadirecError

RESOURCES = ("experiment", "registered_model")
# The auth app's REST paths (mlflow.server.auth.routes: importing it loads the whole server).
CREATE_USER = "/api/2.0/mlflow/users/create"
UPDATE_PASSWORD = "/api/2.0/mlflow/users/update-password"
GRANT = "/api/3.0/mlflow/users/permissions/grant"
REVOKE = "/api/3.0/mlflow/users/permissions/revoke"
ROLES = {"pipeline": "EDIT", "serving": "READ"}
# How long a worker trusts a password it has checked. Each check is a scrypt hash (about 0.12 s of
# CPU here), and a pipeline step makes hundreds of calls: unchecked, auth tripled the container
# smoke pipeline's time. The cost: on a server with several workers, a rotated password keeps
# working on the other workers for up to this long (docs/cluster.md, "MLflow authentication").
AUTH_CACHE_SECONDS = 60


class AuthSetupError(PadirecError):
    """The users could not be set up (the message names the server and the user, never a password)."""


def write_config(path: str | os.PathLike, database_uri: str) -> Path:
    """The auth app's ``basic_auth.ini``: users and grants in ``database_uri`` (the tracking
    database: the auth tables have their own migration table), no permission by default. Written
    owner-only and atomically: it holds the database password. Checked passwords are cached for
    ``AUTH_CACHE_SECONDS`` in each worker (MLflow's own cache, keyed by an HMAC of the password)."""
    parser = configparser.ConfigParser(interpolation=None)
    # The file is read with interpolation on: a URL-encoded password's % must be doubled.
    parser["mlflow"] = {"default_permission": "NO_PERMISSIONS", "database_uri": database_uri.replace("%", "%%"),
                        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
                        "auth_cache_ttl_seconds": str(AUTH_CACHE_SECONDS)}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    os.replace(tmp, path)
    return path


def _call(uri: str, admin: tuple[str, str], endpoint: str, method: str, payload: dict) -> dict:
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

    creds = MlflowHostCreds(uri, username=admin[0], password=admin[1])
    kwargs = {"json": payload} if method == "POST" or method == "PATCH" else {"params": payload}
    response = verify_rest_response(http_request(creds, endpoint, method, **kwargs), endpoint)
    return response.json() if response.content else {}


def _error_code(e: Exception) -> str:
    return getattr(e, "error_code", "") or ""


def ensure_user(uri: str, admin: tuple[str, str], username: str, password: str, permission: str) -> str:
    """Create ``username`` (or set its password), then grant ``permission`` on every experiment and
    registered model (``*``), replacing an earlier grant. Returns "created" or "updated"."""
    from mlflow.exceptions import MlflowException

    if not username or not password:
        raise AuthSetupError(f"user {username or '(no name)'}: a user name and a non-empty password are needed")
    try:
        _call(uri, admin, CREATE_USER, "POST", {"username": username, "password": password})
        state = "created"
    except MlflowException as e:
        if _error_code(e) != "RESOURCE_ALREADY_EXISTS":
            raise
        _call(uri, admin, UPDATE_PASSWORD, "PATCH", {"username": username, "password": password})
        state = "updated"
    for resource in RESOURCES:
        grant = {"username": username, "resource_type": resource, "resource_id": "*"}
        try:
            _call(uri, admin, GRANT, "POST", {**grant, "permission": permission})
        except MlflowException as e:
            if _error_code(e) != "RESOURCE_ALREADY_EXISTS":
                raise
            _call(uri, admin, REVOKE, "POST", grant)
            _call(uri, admin, GRANT, "POST", {**grant, "permission": permission})
    return state


def setup_users(uri: str, admin: tuple[str, str], users: dict[str, tuple[str, str]]) -> dict[str, str]:
    """``users``: role (``pipeline``, ``serving``) -> (user name, password). Returns user -> state."""
    done = {}
    for role, (username, password) in users.items():
        try:
            done[username] = ensure_user(uri, admin, username, password, ROLES[role])
        except AuthSetupError:
            raise
        except Exception as e:
            message = redact(str(getattr(e, "message", e)) or type(e).__name__)
            message = message.replace(password, "***").split(". Response body")[0].splitlines()[0]
            raise AuthSetupError(f"MLflow at {redact(uri)}: could not set up the {role} user {username}: "
                                 f"{message[:300]}") from None
    return done


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise AuthSetupError(f"{name} is not set (docs/cluster.md, 'MLflow authentication')")
    return value


def probe(url: str, host: str, timeout: float = 4.0) -> bool:
    """Whether the server answers an API call as the admin (``MLFLOW_AUTH_ADMIN_*``) with 200, sent
    with ``host`` as the Host header: the host check, the auth app and both databases in one
    request. The Deployment's probes: an unauthenticated httpGet would only ever get 401."""
    import base64
    import urllib.request

    token = base64.b64encode(f"{_env('MLFLOW_AUTH_ADMIN_USERNAME')}:{_env('MLFLOW_AUTH_ADMIN_PASSWORD')}".encode())
    request = urllib.request.Request(url, headers={"Host": host, "Authorization": f"Basic {token.decode()}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["write-config"] and len(argv) == 2:
            write_config(argv[1], _env("MLFLOW_BACKEND_STORE_URI"))
            return 0
        if argv == ["users"]:
            users = {role: (_env(f"PADIREC_MLFLOW_{role.upper()}_USERNAME"), _env(f"PADIREC_MLFLOW_{role.upper()}_PASSWORD"))
                     for role in ROLES}
            admin = (_env("MLFLOW_AUTH_ADMIN_USERNAME"), _env("MLFLOW_AUTH_ADMIN_PASSWORD"))
            for user, state in setup_users(_env("MLFLOW_TRACKING_URI"), admin, users).items():
                print(f"MLflow user {user}: {state}")
            return 0
        if argv[:1] == ["probe"] and len(argv) == 3:
            return 0 if probe(argv[1], argv[2]) else 1
        print("usage: python -m padirec.tracking.auth write-config PATH | users | probe URL HOST", file=sys.stderr)
        return 2
    except (AuthSetupError, OSError) as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
