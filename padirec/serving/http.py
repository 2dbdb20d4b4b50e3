"""``padirec serve``: the registered model over HTTP, following its alias (``follow.AliasFollower``).

The protocol is MLflow's scoring server's: ``POST /invocations`` with the same bodies and the same
400s, answered through MLflow's own ``scoring_server.invocations`` with the model loaded now.
The reply adds ``model_version`` and ``model_uri`` (and the header ``X-Model-Version``): the
version that ranked this request. ``/health`` is liveness (the process and its alias loop run);
``/ready`` and ``/ping`` answer 200 only once a model is loaded. One process, one torch thread
per request: concurrent requests run on uvicorn's worker threads (torch releases the GIL), and
replicas scale it.

Limits: a body over ``PADIREC_SERVING_MAX_BYTES`` is refused (413) before it is parsed, and each
request stops at its deadline (``--timeout``, 504), as the model's record and task caps bound
its work (``padirec.serving``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from padirec.errors import ConfigError
from padirec.serving import _positive_env
from padirec.serving.follow import AliasFollower, Served

log = logging.getLogger("padirec")
MAX_BYTES_ENV = "PADIREC_SERVING_MAX_BYTES"
DEFAULT_MAX_BYTES = 8 * 2**20  # 1,000 records of 50 ids with timestamps are about 1.3 MB
# MLflow retries a failed call for minutes by default; a poll that fails fast is simply tried
# again at the next poll, and the served model is unaffected.
MLFLOW_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def _reply(body: Any, status: int, served: Served | None = None, media: str = "application/json"):
    from starlette.responses import Response

    headers = {"X-Model-Version": served.version} if served else None
    content = body if isinstance(body, str) else json.dumps(body)
    return Response(content=content, status_code=status, media_type=media, headers=headers)


def invoke(served: Served, body: bytes, content_type: str) -> tuple[str, int, str]:
    """One request through MLflow's scoring function, with ``served``: ``(body, status, media type)``."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(body, content_type, served.model, served.input_schema)
    except MlflowException as e:
        if e.get_http_status_code() >= 500 or getattr(e, "stack_trace", None):
            log.error("request failed on %s: %s\n%s", served.uri, e.message, getattr(e, "stack_trace", "") or "")
        error = {"error_code": e.error_code, "message": e.message, "model_version": served.version}
        return json.dumps(error), e.get_http_status_code(), "application/json"
    except RecursionError:  # json.loads of deeply nested brackets
        error = {"error_code": "BAD_REQUEST", "message": "request body is nested too deeply"}
        return json.dumps(error), 400, "application/json"
    response = result.response
    if result.status == 200 and result.mimetype == "application/json" and response.endswith("}"):
        # MLflow writes {"predictions": ...}; the version is spliced in, not re-encoded (CPU per request)
        response = f'{response[:-1]}, "model_version": {json.dumps(served.version)}, "model_uri": {json.dumps(served.uri)}}}'
    return response, result.status, result.mimetype


def build_app(follower: AliasFollower, max_bytes: int | None = None):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    limit = max_bytes or max_bytes_setting()

    def state() -> dict:
        s = follower.current
        return {"model_uri": s.uri if s else None, "model_version": s.version if s else None,
                "following": follower.model_uri, "poll_s": follower.poll_s, "last_poll": follower.last_poll,
                "last_error": follower.last_error}

    async def health(request):
        return _reply({"status": "alive" if follower.alive() else "alias loop stopped", **state()},
                      200 if follower.alive() else 500)

    async def ready(request):
        loaded = follower.current is not None
        return _reply({"status": "ready" if loaded else "no model loaded yet", **state()}, 200 if loaded else 503)

    async def invocations(request):
        served = follower.current  # taken once: the whole request runs on this version
        if served is None:
            return _reply({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "no model loaded yet"}, 503)
        declared = request.headers.get("content-length", "")
        body = bytearray()
        too_big = declared.isdigit() and int(declared) > limit
        if not too_big:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    too_big = True
                    break
        if too_big:
            return _reply({"error_code": "REQUEST_LIMIT_EXCEEDED",
                           "message": f"request body over {limit} bytes ({MAX_BYTES_ENV}): split it"}, 413, served)
        text, status, media = await run_in_threadpool(invoke, served, bytes(body),
                                                      request.headers.get("content-type", "application/json"))
        return _reply(text, status, served, media)

    return Starlette(routes=[Route("/health", health), Route("/ready", ready), Route("/ping", ready),
                             Route("/invocations", invocations, methods=["POST"])])


def max_bytes_setting() -> int:
    value = _positive_env(MAX_BYTES_ENV)
    return DEFAULT_MAX_BYTES if value is None else value


def serve(model_uri: str, host: str, port: int, poll_s: float, timeout_s: float, workdir: str | None = None) -> int:
    """Run the server until SIGTERM or Ctrl-C (requests in flight finish first)."""
    import torch
    import uvicorn
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    from padirec.serving import serving_threads

    if not timeout_s > 0:
        raise ConfigError(f"--timeout {timeout_s!r}: expected seconds > 0")
    for name, value in MLFLOW_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # the model's predict reads its deadline from MLflow's scoring-server variable
    os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(timeout_s)
    torch.set_num_threads(serving_threads(in_server=True) or 1)
    max_bytes_setting()  # a bad setting fails now, not at the first request
    follower = AliasFollower(model_uri, workdir or tempfile.mkdtemp(prefix="padirec-serving-"), poll_s)
    follower.start()
    log.info("padirec serve: %s on %s:%d (polls every %.0f s, request timeout %.0f s)", model_uri, host, port,
             poll_s, timeout_s)
    try:
        uvicorn.run(build_app(follower), host=host, port=port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=int(timeout_s) + 5)
    finally:
        follower.stop()
    return 0
