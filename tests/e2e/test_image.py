"""What the container image does, without a Docker engine.

The Dockerfile builds a wheel from the build context, installs it with its
dependencies into a clean virtualenv and runs its ENTRYPOINT as a non-root user
on a read-only root filesystem. This test does the same on the host: the wheel
from a copy of exactly the context .dockerignore lets through, a fresh
virtualenv outside the repository, the ENTRYPOINT with the image's environment,
started in an empty working directory, and afterwards nothing may have been
written to the virtualenv or the working directory.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import (
    REPO,
    Kubectl,
    Operator,
    bgjob,
    eventually,
    metric,
    restricted_namespace,
)

DOCKERFILE = REPO / "Dockerfile"
# The build context (.dockerignore: pyproject.toml, README.md, operator/).
CONTEXT = ("pyproject.toml", "README.md", "operator")


def dockerfile_final_stage() -> str:
    text = DOCKERFILE.read_text()
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def image_venv() -> Iterator[Path]:
    """A virtualenv with the wheel and its runtime dependencies, like the image's."""
    tmp = Path(tempfile.mkdtemp(prefix="bgjob-image-"))
    context = tmp / "context"
    context.mkdir()
    for name in CONTEXT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(source, context / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    started = time.monotonic()
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp / "wheels"), str(context)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp / "wheels").glob("bgjob_operator-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The image compiles bytecode at install; here that only costs time, and with
    # PYTHONDONTWRITEBYTECODE (as in the image) nothing is compiled at run time.
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-compile",
         str(wheel)],
        check=True,
        timeout=600,
    )  # fmt: skip
    print(f"image venv: wheel + install in {time.monotonic() - started:.1f} s")
    yield venv
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_dockerfile_runs_the_operator_as_a_numeric_non_root_user() -> None:
    final = dockerfile_final_stage()
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", final, flags=re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["bgjob-operator", "run"]
    user = re.search(r"^USER (\S+)$", final, flags=re.MULTILINE)
    assert user and user.group(1) == "65532:65532"
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    # Nothing but the virtualenv comes from the build stage.
    assert re.findall(r"^COPY .*$", final, flags=re.MULTILINE) == [
        "COPY --from=build /opt/bgjob /opt/bgjob"
    ]


def test_the_installed_wheel_runs_the_operator(kubectl: Kubectl, image_venv: Path) -> None:
    k = kubectl
    venv = image_venv
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bgjob; print(bgjob.__file__)"],
        capture_output=True, text=True, check=True, cwd="/",
    )  # fmt: skip
    assert located.stdout.startswith(str(venv)), located.stdout  # not the working tree
    namespace = f"e2e-image-{secrets.token_hex(3)}"
    k.apply(restricted_namespace(namespace), "default")
    run_dir = Path(tempfile.mkdtemp(prefix="bgjob-image-run-"))
    workdir, home = run_dir / "workdir", run_dir / "tmp"
    workdir.mkdir()
    home.mkdir()
    # The image's environment (Dockerfile ENV), with /opt/bgjob and /tmp moved here.
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        "TMPDIR": str(home),
    }
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", dockerfile_final_stage(), re.MULTILINE)
    before = files_of(venv)
    operator = Operator(
        Path(k.kubeconfig),
        run_dir / "operator.log",
        command=json.loads(entrypoint),
        args=["--workers=2", f"--namespace={namespace}"],
        env=env,
        cwd=workdir,
    )
    try:
        operator.start()  # waits for /healthz to answer 200
        k.apply(bgjob("image-check", {"trigger": {"continuous": {}}}), namespace)
        k.wait("bgj/image-check", "condition=Ready", namespace, timeout=60)

        def reconciled() -> bool:
            page = operator.metrics()
            return (metric(page, "bgjob_reconcile_total", result="success") or 0) >= 1 and (
                metric(page, "bgjob_ready_replicas", namespace=namespace, name="image-check") == 1
            )

        eventually(reconciled, timeout=30)
    finally:
        operator.stop()
        k.run("delete", "namespace", namespace, "--wait=false", check=False)
    assert operator.process is not None and operator.process.returncode == 0, operator.log_tail()
    # Read-only root: the process wrote nothing outside its temporary directory.
    assert files_of(venv) == before
    assert list(workdir.iterdir()) == []
    shutil.rmtree(run_dir, ignore_errors=True)
