"""`bgjob-operator render | crd | version`, called the way the console script calls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from specs import IMAGE, TRIGGERS

from bgjob import __version__
from bgjob.api.crd import crd_yaml
from bgjob.cli import main


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjob.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, **spec},
    }


def write(tmp_path: Path, *docs: dict[str, Any], name: str = "jobs.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def render(*paths: str) -> list[dict[str, Any]]:
    """Run `bgjob-operator render -f ...` as the console script does; the printed objects."""
    argv = [arg for path in paths for arg in ("-f", path)]
    done = subprocess.run(
        [sys.executable, "-m", "bgjob.cli", "render", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


KINDS = {
    "continuous": ["Deployment"],
    "schedule": ["CronJob"],
    "once": ["Job"],
    "queue": ["Deployment"],
}


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_render_prints_the_objects_a_backgroundjob_becomes(trigger: str, tmp_path: Path) -> None:
    objects = render(write(tmp_path, manifest("thumbnailer", trigger=TRIGGERS[trigger])))
    assert [o["kind"] for o in objects] == KINDS[trigger]
    assert all(o["metadata"]["name"] == "thumbnailer" for o in objects)
    assert all(o["metadata"]["namespace"] == "default" for o in objects)


def test_render_reads_every_backgroundjob_of_every_file_and_skips_other_kinds(
    tmp_path: Path,
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis"}}
    first = write(
        tmp_path,
        secret,
        manifest("nightly", trigger=TRIGGERS["schedule"], singleton=True),
        name="a.yaml",
    )
    second = write(tmp_path, manifest("mailer", trigger=TRIGGERS["once"]), name="b.yaml")
    objects = render(first, second)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("CronJob", "nightly"),
        ("Job", "mailer"),
    ]


def test_render_keeps_the_namespace_of_the_backgroundjob(tmp_path: Path) -> None:
    doc = manifest("thumbnailer", trigger=TRIGGERS["continuous"])
    doc["metadata"]["namespace"] = "media"
    (deployment,) = render(write(tmp_path, doc))
    assert deployment["metadata"]["namespace"] == "media"


def test_render_called_in_process_writes_to_the_current_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() is also the API for embedding and tests: output must follow sys.stdout
    # (contextlib.redirect_stdout, capsys), not the stdout of import time.
    path = write(tmp_path, manifest("thumbnailer", trigger=TRIGGERS["continuous"]))
    assert main(["render", "-f", path]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [o["kind"] for o in objects] == ["Deployment"]


def test_render_of_an_invalid_backgroundjob_exits_1_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = manifest("thumbnailer", trigger=TRIGGERS["continuous"], singleton=True, concurrency=3)
    assert main(["render", "-f", write(tmp_path, bad)]) == 1
    captured = capsys.readouterr()
    assert "spec.concurrency" in captured.err
    assert "thumbnailer" in captured.err
    assert captured.out == ""


def test_render_reports_every_invalid_backgroundjob_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        manifest("good", trigger=TRIGGERS["continuous"]),
        manifest("no-trigger"),
        manifest("bad-cron", trigger={"schedule": {"cron": "daily"}}),
    )
    assert main(["render", "-f", path]) == 1
    captured = capsys.readouterr()
    assert "no-trigger" in captured.err and "spec.trigger" in captured.err
    assert "bad-cron" in captured.err and "spec.trigger.schedule.cron" in captured.err
    assert captured.out == ""


def test_render_of_a_file_without_backgroundjobs_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert main(["render", "-f", path]) == 1
    assert "no BackgroundJob" in capsys.readouterr().err


def test_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"bgjob-operator {__version__}"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["deploy"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
