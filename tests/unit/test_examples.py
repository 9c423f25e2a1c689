"""The Celery example and the local overlay of `make run`: what they promise holds in
their own files (the real-node e2e tests run them)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from bgjob.api.models import parse

ROOT = Path(__file__).resolve().parents[2]
CELERY = ROOT / "examples" / "celery"


def test_the_celery_example_scales_one_task_per_solo_worker_on_its_own_queue() -> None:
    bgj = parse(yaml.safe_load((CELERY / "backgroundjob.yaml").read_text()))
    queue = bgj.spec.trigger.queue
    assert queue is not None and queue.celery is not None
    command = bgj.spec.command or []
    assert f"--queues={queue.celery.queue}" in command and "--pool=solo" in command
    assert "--app=tasks" in command and queue.target_per_replica == 1
    # Warm shutdown finishes the task in hand: the grace period covers it.
    assert bgj.spec.shutdown.grace_period_seconds >= 60


def test_the_celery_app_keeps_tasks_in_hand_unacknowledged_and_one_at_a_time() -> None:
    source = (CELERY / "tasks.py").read_text()
    tree = ast.parse(source)
    settings = {
        kw.arg: ast.literal_eval(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "update"
        for kw in node.keywords
        if kw.arg and isinstance(kw.value, ast.Constant)
    }
    assert settings["task_acks_late"] is True
    assert settings["task_reject_on_worker_lost"] is True
    assert settings["worker_prefetch_multiplier"] == 1
    assert "def send_welcome_email(" in source


def test_make_run_applies_the_rq_example_with_its_secret_from_the_runs_redis() -> None:
    local = yaml.safe_load((ROOT / "examples" / "local" / "kustomization.yaml").read_text())
    assert "../rq/backgroundjob.yaml" in local["resources"]
    targets = [
        target["select"].get("name")
        for replacement in local["replacements"]
        if replacement["source"]["fieldPath"] == "data.REDIS_URL"
        for target in replacement["targets"]
    ]
    assert "emails-redis" in targets
