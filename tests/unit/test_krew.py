"""The krew manifest points at the archive hack/krew_archive.py builds, and its shim runs."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from bgjob import __version__

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "plugins" / "bgj.yaml"


def test_the_manifest_matches_the_archive_and_the_version(tmp_path: Path) -> None:
    out = tmp_path / "kubectl-bgj.tar.gz"
    done = subprocess.run(
        [sys.executable, str(REPO / "hack" / "krew_archive.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = out.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert done.stdout.strip() == digest
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "bgj"
    assert manifest["spec"]["version"] == f"v{__version__}"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["sha256"] == digest, "rebuild: .venv/bin/python hack/krew_archive.py"
    assert f"/v{__version__}/kubectl-bgj.tar.gz" in platform["uri"]
    assert __version__ in manifest["spec"]["caveats"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert platform["bin"] in names
        assert [f["from"] for f in platform["files"]] == names


def test_the_archived_shim_runs_the_plugin(tmp_path: Path) -> None:
    out = tmp_path / "kubectl-bgj.tar.gz"
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "krew_archive.py"), str(out)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path, filter="data")
    shim = tmp_path / "kubectl-bgj"
    env = {**os.environ, "BGJOB_PYTHON": sys.executable}
    done = subprocess.run(
        [str(shim), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: kubectl bgj")
    # Without the package, the user is told what to install.
    bare = {"PATH": "/nonexistent", "BGJOB_PYTHON": "/bin/false"}
    missing = subprocess.run(
        ["/bin/sh", str(shim), "why", "x"], capture_output=True, text=True, env=bare, timeout=60
    )
    assert missing.returncode == 1
    assert "pip install --user bgjob-operator" in missing.stderr


def test_the_wheel_declares_the_kubectl_bgj_console_script() -> None:
    import tomllib
    from importlib.metadata import entry_points

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-bgj"] == "bgjob.plugin:main"
    installed = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert installed.get("kubectl-bgj") == "bgjob.plugin:main"
