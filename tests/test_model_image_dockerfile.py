"""``tools/model_image.py`` patches MLflow's own generated Dockerfile; these run without an engine.

The Dockerfile is the one MLflow 3 writes for ``mlflow models generate-dockerfile`` (its
``generate_dockerfile``, python-slim base), so a change in MLflow's template shows up here first.
"""

from __future__ import annotations

import re

import pytest

from tools.model_image import BUILD_DIR, NGINX_LOGS, NON_ROOT, Failure, patch_dockerfile


@pytest.fixture()
def context(tmp_path):
    from mlflow.models.docker_utils import generate_dockerfile

    model_dir = tmp_path / "model_dir"
    model_dir.mkdir()
    (model_dir / "python_env.yaml").write_text("python: 3.11.7\nbuild_dependencies:\n  - pip==24.0\n")
    (model_dir / "requirements.txt").write_text("mlflow==3.17.2\ntorch==2.13.0\n")
    (tmp_path / BUILD_DIR).mkdir()
    generate_dockerfile(str(tmp_path), "python:3.11.7-slim", "COPY model_dir /opt/ml/model\nRUN true",
                        "from mlflow.models import container as C; C._serve('local')", env_manager="local")
    return tmp_path


def test_nginx_logs_are_links_before_the_entrypoint(context):
    mlflow_base, base = patch_dockerfile(context, "padirec-base:bookworm", "torch==2.13.0+cpu")
    text = (context / "Dockerfile").read_text()
    assert (mlflow_base, base) == ("python:3.11.7-slim", "padirec-base:bookworm")
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["padirec-base:bookworm", "padirec-base:bookworm"]
    # after MLflow installs nginx (which makes the log files), right before MLflow's entrypoint
    nginx_installed = text.index("install -y --no-install-recommends nginx")
    links = text.index(NGINX_LOGS)
    assert nginx_installed < links and text[links + len(NGINX_LOGS):].startswith(NON_ROOT + "ENTRYPOINT [")
    assert text.count("ln -sf /dev/stderr /var/log/nginx/error.log") == 1
    assert text.count("ln -sf /dev/stdout /var/log/nginx/access.log") == 1
    assert (context / BUILD_DIR / "requirements.txt").read_text() == "mlflow==3.17.2\ntorch==2.13.0\n"


def test_a_template_without_one_entrypoint_is_one_line(context):
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(re.sub(r"^ENTRYPOINT .*$", "", dockerfile.read_text(), flags=re.M))
    with pytest.raises(Failure, match="not one ENTRYPOINT"):
        patch_dockerfile(context, None, "")


def test_the_image_runs_as_a_user_of_its_own(context):
    """The last USER before MLflow's entrypoint is not root, in the final stage, after nginx is installed."""
    patch_dockerfile(context, None, "")
    text = (context / "Dockerfile").read_text()
    final_stage = text[text.rindex("\nFROM "):]
    users = re.findall(r"^USER (\S+)$", final_stage, re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert final_stage.index("useradd --uid 10001") > final_stage.index("install -y --no-install-recommends nginx")
    assert final_stage.index(f"USER {users[-1]}") < final_stage.index("ENTRYPOINT [")
    assert "chown -R padirec:padirec /var/log/nginx /var/lib/nginx" in final_stage
    # the model is copied in as root, some files 0600: the user must read it
    assert final_stage.index("COPY model_dir /opt/ml/model") < final_stage.index("chmod -R a+rX /opt/ml")
