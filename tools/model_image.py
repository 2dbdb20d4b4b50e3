"""Build the serving image of a registered model: MLflow's own ``build-docker`` Dockerfile.

    python tools/model_image.py [--model-uri models:/padirec-recommender@champion]
        [--tracking-uri URI] [--tag NAME:TAG] [--base IMAGE] [--torch cpu|cuda] [--context DIR]

``mlflow models generate-dockerfile`` writes the build context that ``mlflow models build-docker``
builds: the model in ``model_dir/`` and a Dockerfile that starts from ``python:<the model's
Python>-slim``, installs nginx, ``mlflow``, the model's ``requirements.txt`` (with its
``constraints.txt``) and ``gunicorn[gevent]``, and serves with MLflow's scoring server (nginx on
8080 in front of uvicorn: ``/ping``, ``/invocations``). This script builds that Dockerfile, changed
in front of MLflow's first step and before its ``ENTRYPOINT``, and only where MLflow's
``FROM python:...`` line is found:

* a first build stage installs the model's environment (the same pip commands MLflow's steps run,
  from the model's own files) into ``/opt/venv``, with torch's CPU build unless ``--torch cuda``,
  from this machine's package sources (index, CA bundle, a local torch wheel); the image gets the
  virtualenv, not the sources, so nothing of this machine is in it. MLflow's steps then find every
  requirement installed. As it depends only on the requirements, a new model version reuses it from
  the layer cache.
* ``--base`` replaces MLflow's base image (no registry here: ``images/base.sh`` makes a Debian
  bookworm with Python 3.11).
* nginx's two log files are made links to the container's stdout and stderr at build time. MLflow's
  entrypoint makes these links (``ln -sf``) while the nginx it has just started opens the files; on
  overlay2 nginx's open can then fail with "File exists" and the container exits at start (2 of
  120 starts here; none of 140 with the links). With the links already in the image, ``ln -sf``
  swaps a link for the same link in one rename, and nginx opens through either.
* The image runs as a user of its own, uid 10001 (``USER``), owner of nginx's log and temp folders.

The model URI is resolved to its version first, so the image holds that version even if the alias
moves, and is tagged ``<model>:v<version>`` unless ``--tag`` says otherwise. Package sources come
from the environment, else from pip's settings, as in ``images/build.sh``: ``PIP_INDEX_URL``,
``PIP_EXTRA_INDEX_URL`` (http(s)), ``PIP_CERT``, and a torch wheel in ``--wheels`` (default
``TORCH_WHEELS``, ``PIP_FIND_LINKS`` or pip's find-links). ``DOCKER`` names the client (default
docker), ``DOCKER_HOST`` the engine. Exits 2 with one line when something is wrong.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: padirec from this checkout

DEFAULT_MODEL = "models:/padirec-recommender@champion"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILD_DIR = "padirec-build"  # our part of the build context, next to MLflow's model_dir/


class Failure(Exception):
    """One line for the user; the script exits 2 with it."""


def redact(text: str) -> str:
    from padirec.tracking import redact as _redact

    return _redact(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="model_image", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-uri", default=DEFAULT_MODEL, help=f"registered model (default {DEFAULT_MODEL})")
    p.add_argument("--tracking-uri", help="MLflow tracking/registry URI (default MLFLOW_TRACKING_URI, else the "
                                          "local store runs/mlflow.db)")
    p.add_argument("--tag", help="image name:tag (default <model>:v<version>); never 'latest'")
    p.add_argument("--base", help="base image instead of MLflow's python:<version>-slim, with Python 3.11")
    p.add_argument("--torch", choices=("cpu", "cuda"), default="cpu",
                   help="torch build: cpu (default; the model is served on CPU) or cuda (PyPI's wheel, "
                        "what stock build-docker installs, several GB larger)")
    p.add_argument("--wheels", help="folder with a torch CPU wheel (default TORCH_WHEELS, PIP_FIND_LINKS or "
                                    "pip's find-links)")
    p.add_argument("--network", default=os.environ.get("DOCKER_BUILD_NETWORK", "host"),
                   help="docker build --network (default host, as images/build.sh)")
    p.add_argument("--context", help="write the build context here and keep it (default: a temporary folder)")
    p.add_argument("--no-build", action="store_true", help="write the context (needs --context) and stop")
    args = p.parse_args(argv)
    if args.no_build and not args.context:
        p.error("--no-build needs --context DIR")
    return args


def resolve(model_uri: str, tracking_uri: str) -> tuple[str, str | None, str | None]:
    """``(pinned_uri, name, version)``: ``models:/name@alias`` becomes ``models:/name/<version>``."""
    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if not m:
        return model_uri, None, None  # a run or a folder: built as given, --tag needed
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias, version = m.groups()
    try:
        if alias:
            version = MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(name, alias).version
        else:
            MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version(name, version)
    except MlflowException as e:
        raise Failure(f"{model_uri} at {redact(tracking_uri)}: {str(e.message).splitlines()[0]}") from None
    return f"models:/{name}/{version}", name, str(version)


def check_tag(tag: str) -> str:
    # docker's reference grammar, loosely: [registry[:port]/]lower-case/path, then an explicit tag
    if not re.fullmatch(r"(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*:\w[\w.-]{0,127}", tag):
        raise Failure(f"--tag {tag!r}: expected name:tag (lower-case name, explicit tag), e.g. padirec-recommender:v3")
    if tag.endswith(":latest"):
        raise Failure(f"--tag {tag!r}: 'latest' is not immutable; use the model version, e.g. padirec-recommender:v3")
    return tag


def generate(pinned_uri: str, tracking_uri: str, context: Path) -> None:
    """MLflow's own command: downloads the model into ``context/model_dir`` and writes the Dockerfile."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", pinned_uri,
                           "-d", str(context)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Downloading artifacts" not in ln]
        raise Failure(f"mlflow models generate-dockerfile -m {pinned_uri} failed: {redact(lines[-1] if lines else '?')}")


def pip_setting(name: str) -> str:
    """pip's own setting (``pip config list``), as images/build.sh reads it."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.fullmatch(rf"(?:global|:env:)\.{name}='(.*)'", line.strip())
        if m:
            return m.group(1)
    return ""


def package_sources(args, torch_version: str, extra_dir: Path) -> tuple[dict[str, str], str]:
    """Build arguments for pip in the first stage, and a line saying where packages come from.
    Files (CA bundle, torch wheel) are copied into ``extra_dir``, which only that stage sees."""
    build_args: dict[str, str] = {}
    index = os.environ.get("PIP_INDEX_URL") or pip_setting("index-url")
    if index:
        build_args["PIP_INDEX_URL"] = index
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "")
    if extra and not extra.startswith(("http://", "https://")):
        raise Failure("PIP_EXTRA_INDEX_URL must be http(s) to be reachable from a build")
    cert = os.environ.get("PIP_CERT") or pip_setting("cert")
    if cert and Path(cert).is_file():
        shutil.copyfile(cert, extra_dir / "ca.crt")
        build_args["PIP_CERT"] = f"/opt/{BUILD_DIR}/ca.crt"
    wheel = None
    if args.torch == "cpu":
        folder = args.wheels or os.environ.get("TORCH_WHEELS") or os.environ.get("PIP_FIND_LINKS") or pip_setting("find-links")
        found = sorted(Path(folder).glob(f"torch-{torch_version}+cpu-cp311-*.whl")) if folder and Path(folder).is_dir() else []
        if found:
            wheel = found[-1]
            (extra_dir / "wheels").mkdir()
            try:  # a hard link where it can: the wheel is 190 MB
                os.link(wheel, extra_dir / "wheels" / wheel.name)
            except OSError:
                shutil.copyfile(wheel, extra_dir / "wheels" / wheel.name)
            build_args["PIP_FIND_LINKS"] = f"/opt/{BUILD_DIR}/wheels"
        elif args.wheels:
            raise Failure(f"--wheels {args.wheels}: no torch-{torch_version}+cpu-cp311-*.whl there")
        elif TORCH_CPU_INDEX not in extra:
            extra = f"{extra} {TORCH_CPU_INDEX}".strip()  # where torch's CPU build is published
    if extra:
        build_args["PIP_EXTRA_INDEX_URL"] = extra
    where = f"index {index or 'https://pypi.org/simple'}{' + ' + extra if extra else ''}"
    where += f"; CA bundle {cert}" if "PIP_CERT" in build_args else ""
    where += f"; torch wheel {wheel.name}" if wheel else ""
    return build_args, redact(where)


def python_env(model_dir: Path) -> tuple[str, list[str]]:
    """The model's Python version and build dependencies (``python_env.yaml``)."""
    import yaml

    env = yaml.safe_load((model_dir / "python_env.yaml").read_text())
    return str(env["python"]), [str(d) for d in env.get("build_dependencies") or []]


def torch_pin(model_dir: Path) -> str:
    for line in (model_dir / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(r"torch==([\w.]+)", line.strip())
        if m:
            return m.group(1)
    raise Failure(f"{model_dir / 'requirements.txt'} pins no torch==<version>: is this a padirec model?")


# see the module's docstring: MLflow's entrypoint races nginx for these two paths
NGINX_LOGS = """# padirec (tools/model_image.py): nginx's logs are links before MLflow's entrypoint relinks them
RUN mkdir -p /var/log/nginx \\
    && ln -sf /dev/stdout /var/log/nginx/access.log \\
    && ln -sf /dev/stderr /var/log/nginx/error.log

"""
# serve as a user of its own (the restricted Pod Security profile refuses root): nginx (port 8080,
# pid in /tmp) writes its temp files under /var/lib/nginx, and MLflow's entrypoint relinks its logs;
# the model was copied in as root, some files 0600 (written through a temporary file): readable now
NON_ROOT = """# padirec (tools/model_image.py): not root
RUN useradd --uid 10001 --create-home padirec \\
    && mkdir -p /var/lib/nginx \\
    && chown -R padirec:padirec /var/log/nginx /var/lib/nginx \\
    && chmod -R a+rX /opt/ml
USER 10001

"""


def patch_dockerfile(context: Path, base: str | None, torch_spec: str) -> tuple[str, str]:
    """Put the model-environment stage in front of MLflow's Dockerfile; returns (mlflow_base, base)."""
    model_dir = context / "model_dir"
    dockerfile = context / "Dockerfile"
    text = dockerfile.read_text()
    froms = re.findall(r"^FROM (\S+)$", text, re.M)
    # Only MLflow's python-slim template is patched: its steps assume `python` and `pip` on PATH,
    # which the virtualenv below provides on any base.
    if len(froms) != 1 or not froms[0].startswith("python:") or "WORKDIR /opt/mlflow" not in text:
        raise Failure(f"{dockerfile}: not MLflow's python-slim Dockerfile (FROM {froms}); has MLflow's template changed?")
    mlflow_base = froms[0]
    base = base or mlflow_base
    python, build_deps = python_env(model_dir)
    major_minor = ".".join(python.split(".")[:2])
    for name in ("requirements.txt", "constraints.txt"):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, context / BUILD_DIR / name)
    check = (f"import sys; v = '%d.%d' % sys.version_info[:2]; "
             f"assert v == '{major_minor}', f'the model needs Python {major_minor}, the base image has {{v}}'")
    # the same two pip commands as MLflow's container._install_pyfunc_deps (env manager local)
    swapped = f", FROM {base} instead of {mlflow_base}" if base != mlflow_base else ""
    first = " ".join(a for a in [*build_deps, torch_spec, "-r", f"/opt/{BUILD_DIR}/requirements.txt"] if a)
    stage = f"""# padirec (tools/model_image.py): the model's environment, from its requirements.txt and
# constraints.txt only, in a stage of its own so that this machine's package sources (CA bundle,
# torch wheel, index) stay out of the image. MLflow's steps below find everything installed.
FROM {base} AS model-env
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY {BUILD_DIR}/ /opt/{BUILD_DIR}/
RUN python3 -c "{check}" \\
    && python3 -m venv /opt/venv \\
    && /opt/venv/bin/python -m pip install {first} \\
    && /opt/venv/bin/pip install "gunicorn[gevent]"

# MLflow's Dockerfile (`mlflow models generate-dockerfile`) from here on{swapped},
# `python` and `pip` being the virtualenv's.
FROM {base}
COPY --from=model-env /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# an ARG, not kept in the image: pip below has nothing to fetch, so no index check either
ARG PIP_DISABLE_PIP_VERSION_CHECK=1"""
    if len(re.findall(r"^ENTRYPOINT ", text, re.M)) != 1:
        raise Failure(f"{dockerfile}: not one ENTRYPOINT in MLflow's Dockerfile; has MLflow's template changed?")
    text = re.sub(r"^FROM \S+$", lambda _: stage, text, count=1, flags=re.M)
    dockerfile.write_text(re.sub(r"^ENTRYPOINT ", lambda _: NGINX_LOGS + NON_ROOT + "ENTRYPOINT ", text, count=1, flags=re.M))
    return mlflow_base, base


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([os.environ.get("DOCKER", "docker"), *args], **kw)


def build(args, context: Path, tag: str, build_args: dict[str, str], labels: dict[str, str]) -> float:
    cmd = ["build", "--network", args.network, "-t", tag]
    for k, v in build_args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    for k, v in labels.items():
        cmd += ["--label", f"{k}={v}"]
    start = time.monotonic()
    proc = docker(*cmd, str(context))  # streams: a cold build takes minutes
    if proc.returncode != 0:
        raise Failure(f"docker build of {tag} failed ({proc.returncode}); the build's output is above")
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from padirec.errors import PadirecError

    try:
        if args.tag:
            check_tag(args.tag)
        if args.tracking_uri:
            tracking = args.tracking_uri
        else:
            from padirec.commands.recommend import registry_uri

            tracking = registry_uri(args.model_uri) or ""
        pinned, name, version = resolve(args.model_uri, tracking)
        if args.tag:
            tag = args.tag
        elif name:
            tag = check_tag(f"{name.lower()}:v{version}")
        else:
            raise Failure(f"--model-uri {args.model_uri} is not a registered model version: give --tag")
        if shutil.which(os.environ.get("DOCKER", "docker")) is None and not args.no_build:
            raise Failure("no docker client (DOCKER names it); see images/engine.sh on a machine without one")
        if args.context:
            context = Path(args.context)
            if context.exists() and any(context.iterdir()):
                raise Failure(f"--context {context} is not empty")
            context.mkdir(parents=True, exist_ok=True)
        else:
            context = Path(tempfile.mkdtemp(prefix="padirec-model-image-"))
        try:
            generate(pinned, tracking, context)
            (context / BUILD_DIR).mkdir()
            torch_version = torch_pin(context / "model_dir")
            torch_spec = f"torch=={torch_version}+cpu" if args.torch == "cpu" else ""
            build_args, where = package_sources(args, torch_version, context / BUILD_DIR)
            mlflow_base, base = patch_dockerfile(context, args.base, torch_spec)
            print(f"model_image: {args.model_uri} -> {pinned}; MLflow's Dockerfile on {base}"
                  f"{'' if base == mlflow_base else f' (MLflow: {mlflow_base})'}; torch {args.torch}; {where}",
                  flush=True)
            if args.no_build:
                print(f"model_image: build context in {context}")
                return 0
            labels = {"padirec.model": pinned, "padirec.torch": args.torch}
            seconds = build(args, context, tag, build_args, labels)
        finally:
            if not args.context:
                shutil.rmtree(context, ignore_errors=True)
        size = docker("image", "inspect", "-f", "{{.Size}}", tag, capture_output=True, text=True).stdout.strip()
        print(f"image {tag}: {int(size or 0) // 1_000_000} MB, built in {seconds:.0f} s "
              f"(serves {pinned}: docker run -p 5001:8080 {tag})")
        return 0
    except (Failure, PadirecError) as e:
        print(f"model_image: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
