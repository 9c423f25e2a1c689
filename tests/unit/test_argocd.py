"""The Argo CD health check and resource actions, run in Argo CD's own Lua VM.

Argo CD runs ``health.lua`` and the actions in gopher-lua (Lua 5.1) with only the
package, base and table libraries (and a safe ``os``) unless ``useOpenLibs`` is set.
These tests run the same scripts in gopher-lua set up that way (hack/argocd-lua,
built with the gopher-lua version Argo CD requires), and in C Lua 5.1 and 5.4
(lupa) with the same libraries removed, against BackgroundJobs whose status comes
from the operator's own ``status_from``; and they replay ``health_test.yaml`` /
``action_test.yaml`` the way Argo CD's Go harness (util/lua/health_test.go,
custom_actions_test.go) does.

The committed testdata is generated here; after a change to ``status_from``:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_argocd.py
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from lupa import lua51, lua54
from specs import CONTINUOUS, ONCE, SCHEDULE, bgjob, queue

from bgjob.status import Observed, Problem, status_from

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "contrib" / "argocd" / "resource_customizations" / "bgjob.dev" / "BackgroundJob"
NOW = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# --- a Lua VM with what Argo CD gives a script ------------------------------------------

# Lua as Argo CD runs it without useOpenLibs: base, package, table (and a safe os with
# time and date). The string library and the string metatable are absent, so
# `s:find()` fails there and here.
SANDBOX = """
string, math, io, debug, coroutine, utf8, bit32 = nil, nil, nil, nil, nil, nil, nil
local time, date = os.time, os.date
os = {time = time, date = date}
getmetatable("").__index = nil
"""

# run(script, obj, params) -> the returned value, as Argo CD's JSON encoding sees it
Runner = Callable[[str, dict[str, Any], "dict[str, str] | None"], Any]


class LuaError(Exception):
    """The script failed in the VM."""


def clean(new: Any, old: Any) -> Any:
    """Argo CD's cleanReturnedObj: an empty table comes back as [] from the JSON
    encoding; where the input had an object there, it is an object again."""
    if isinstance(new, list) and not new and isinstance(old, dict):
        return {}
    if isinstance(new, dict):
        olds = old if isinstance(old, dict) else {}
        return {key: clean(value, olds.get(key)) for key, value in new.items()}
    if isinstance(new, list):
        olds = old if isinstance(old, list) else []
        return [clean(v, olds[i] if i < len(olds) else None) for i, v in enumerate(new)]
    return new


def lua_value(vm: ModuleType, value: Any) -> Any:
    """A Lua table as JSON would have it: keys 1..n an array, empty an array."""
    if vm.lua_type(value) != "table":
        return value
    items = list(value.items())
    keys = [key for key, _ in items]
    if sorted(keys, key=str) == sorted(range(1, len(keys) + 1), key=str):
        return [lua_value(vm, item) for _, item in sorted(items)]
    return {str(key): lua_value(vm, item) for key, item in items}


def lupa_runner(vm: ModuleType) -> Runner:
    """C Lua through lupa, with the libraries Argo CD leaves out removed."""

    def run(script: str, obj: dict[str, Any], params: dict[str, str] | None = None) -> Any:
        runtime = vm.LuaRuntime(unpack_returned_tuples=False)
        runtime.execute(SANDBOX)
        runtime.globals().obj = runtime.table_from(copy.deepcopy(obj), recursive=True)
        runtime.globals().actionParams = runtime.table_from(params or {})
        try:
            value = runtime.execute(script)
        except vm.LuaError as error:
            raise LuaError(str(error)) from error
        return clean(lua_value(vm, value), obj)

    return run


def gopher_runner(binary: Path) -> Runner:
    """gopher-lua, Argo CD's own VM, through hack/argocd-lua."""

    def run(script: str, obj: dict[str, Any], params: dict[str, str] | None = None) -> Any:
        request = [{"script": script, "obj": obj, "params": params or {}}]
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        (response,) = json.loads(done.stdout)
        if "error" in response:
            raise LuaError(response["error"])
        return clean(response.get("result"), obj)

    return run


@pytest.fixture(scope="session")
def argocd_lua() -> Path:
    """hack/argocd-lua built once per source version (gopher-lua from the Go proxy)."""
    source = REPO / "hack" / "argocd-lua"
    digest = hashlib.sha256(
        b"".join((source / name).read_bytes() for name in ("main.go", "go.mod", "go.sum"))
    ).hexdigest()[:12]
    cache = Path(os.environ.get("BGJOB_CACHE", Path.home() / ".cache" / "bgjob-operator"))
    binary = cache / f"argocd-lua-{digest}" / "argocd-lua"
    if not binary.exists():
        env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
        built = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture(params=["gopher-lua", "lua5.1", "lua5.4"])
def vm(request: pytest.FixtureRequest) -> Runner:
    if request.param == "gopher-lua":
        return gopher_runner(request.getfixturevalue("argocd_lua"))
    return lupa_runner(lua51 if request.param == "lua5.1" else lua54)


def health(vm: Runner, obj: dict[str, Any]) -> dict[str, str]:
    """Argo CD's HealthStatus for the object: {status, message}."""
    result = vm((HERE / "health.lua").read_text(), obj, None)
    assert isinstance(result, dict), result
    assert result["status"] in {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
        "Missing",
        "Unknown",
    }
    return {"status": result["status"], "message": result.get("message", "")}


def discover(vm: Runner, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions discovery.lua offers, as Argo CD's ResourceAction list."""
    result = vm((HERE / "actions" / "discovery.lua").read_text(), obj, None)
    return sorted(({"name": name, **fields} for name, fields in result.items()), key=str)


def act(vm: Runner, action: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object an action returns (an old-style action: a patch of the source)."""
    result = vm((HERE / "actions" / action / "action.lua").read_text(), obj, None)
    assert isinstance(result, dict)
    return result


# --- BackgroundJobs with the status the operator writes ---------------------------------


def deployment(*, ready: int = 2, updated: int = 2, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
        },
    }


def cronjob() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "worker"}}


def job(name: str, *, active: int = 0, complete: bool = False, failed: bool = False) -> Any:
    status: dict[str, Any] = {"startTime": "2026-01-14T23:00:00Z", "active": active}
    if complete:
        status["completionTime"] = "2026-01-14T23:05:00Z"
        status["conditions"] = [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-14T23:05:00Z"}
        ]
    if failed:
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "lastTransitionTime": "2026-01-14T23:05:00Z",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "status": status}


@dataclass(frozen=True)
class Scenario:
    """One BackgroundJob, the status ``status_from`` gives it, and Argo CD's verdict."""

    file: str
    expected: dict[str, str]
    spec: dict[str, Any]
    observed: Observed = field(default_factory=Observed)
    options: dict[str, Any] = field(default_factory=dict)
    # The generation the status was written for; metadata.generation may be ahead.
    status_generation: int = 1
    generation: int = 1
    annotations: dict[str, str] = field(default_factory=dict)
    no_status: bool = False

    def object(self) -> dict[str, Any]:
        bgj = bgjob(
            "worker", generation=self.status_generation, annotations=self.annotations, **self.spec
        )
        out: dict[str, Any] = {
            "apiVersion": "bgjob.dev/v1alpha1",
            "kind": "BackgroundJob",
            "metadata": {
                "name": "worker",
                "namespace": "shop",
                "generation": self.generation,
                **({"annotations": self.annotations} if self.annotations else {}),
            },
            "spec": bgj.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        }
        if not self.no_status:
            out["status"] = status_from(bgj, self.observed, NOW, **self.options).wire()
        return out


def healthy(message: str) -> dict[str, str]:
    return {"status": "Healthy", "message": message}


def progressing(message: str) -> dict[str, str]:
    return {"status": "Progressing", "message": message}


def degraded(message: str) -> dict[str, str]:
    return {"status": "Degraded", "message": message}


SUSPENDED = {"status": "Suspended", "message": "Suspended: spec.suspend is true"}
CONT2 = {"trigger": CONTINUOUS, "concurrency": 2}
HEALTH = [
    Scenario(
        "healthy_continuousRolledOut.yaml",
        healthy("2 of 2 pods ready"),
        CONT2,
        Observed(deployment()),
        {"desired_replicas": 2},
    ),
    Scenario(
        "progressing_continuousRollingOut.yaml",
        progressing("RollingOut: 1 of 2 pods updated"),
        CONT2,
        Observed(deployment(updated=1, ready=1)),
        {"desired_replicas": 2},
    ),
    Scenario(
        "progressing_waitingForPods.yaml",
        progressing("WaitingForPods: 1 of 2 pods ready"),
        CONT2,
        Observed(deployment(ready=1)),
        {"desired_replicas": 2},
    ),
    Scenario(
        "progressing_creating.yaml",
        progressing("Creating: the workload is being created"),
        CONT2,
        Observed(),
        {"desired_replicas": 2},
    ),
    Scenario(
        "progressing_newGeneration.yaml",
        progressing("Waiting for the operator to observe generation 3"),
        CONT2,
        Observed(deployment()),
        {"desired_replicas": 2},
        status_generation=2,
        generation=3,
    ),
    Scenario(
        "progressing_noStatus.yaml",
        progressing("Waiting for the operator to report a status"),
        CONT2,
        no_status=True,
    ),
    Scenario(
        "healthy_queueIdle.yaml",
        healthy("0 of 0 pods ready"),
        {"trigger": queue(), "concurrency": 5},
        Observed(deployment(ready=0, updated=0, replicas=0)),
        {"desired_replicas": 0, "queue_length": 0},
    ),
    Scenario(
        "degraded_queueUnreachable.yaml",
        degraded("QueueUnreachable: redis://redis.shop:6379/0: connection refused"),
        {"trigger": queue(), "concurrency": 5},
        Observed(deployment()),
        {
            "desired_replicas": 2,
            "problem": Problem(
                "QueueUnreachable", "redis://redis.shop:6379/0: connection refused", False
            ),
        },
    ),
    Scenario(
        "healthy_scheduled.yaml",
        healthy("CronJob worker is scheduled"),
        {"trigger": SCHEDULE},
        Observed(cronjob()),
    ),
    Scenario(
        "healthy_scheduleRunning.yaml",
        healthy("CronJob worker is scheduled"),
        {"trigger": SCHEDULE},
        Observed(cronjob(), (job("worker-29012345", active=1),)),
    ),
    Scenario(
        "degraded_invalidTimeZone.yaml",
        degraded('InvalidTimeZone: the cluster rejected timeZone "Mars/Olympus"'),
        {"trigger": {"schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Madrid"}}},
        Observed(),
        {"problem": Problem("InvalidTimeZone", 'the cluster rejected timeZone "Mars/Olympus"')},
    ),
    Scenario(
        "suspended_schedule.yaml",
        SUSPENDED,
        {"trigger": SCHEDULE, "suspend": True},
        Observed(cronjob()),
    ),
    Scenario(
        "suspended_continuous.yaml",
        SUSPENDED,
        {**CONT2, "suspend": True},
        Observed(deployment(ready=0, updated=0, replicas=0)),
        {"desired_replicas": 0},
    ),
    Scenario(
        "healthy_onceWaiting.yaml",
        healthy("the run is due at 2026-01-15T06:00:00Z"),
        {"trigger": {"once": {"at": "2026-01-15T06:00:00Z"}}},
        Observed(),
        {"due": NOW + timedelta(hours=6), "once_started": False},
    ),
    Scenario(
        "healthy_onceRunning.yaml",
        healthy("run worker is running"),
        {"trigger": ONCE},
        Observed(None, (job("worker", active=1),)),
    ),
    Scenario(
        "healthy_onceSucceeded.yaml",
        healthy("run worker succeeded"),
        {"trigger": ONCE},
        Observed(None, (job("worker", complete=True),)),
    ),
    Scenario(
        "degraded_onceFailed.yaml",
        degraded("RunFailed: run worker failed: BackoffLimitExceeded"),
        {"trigger": ONCE},
        Observed(None, (job("worker", failed=True),)),
    ),
]

# Inputs of the action tests: the annotation and runNowHandled as the operator left them.
ACTION_INPUTS = {
    "schedule.yaml": Scenario(
        "", {}, {"trigger": SCHEDULE}, Observed(cronjob()), annotations={"bgjob.dev/run-now": "7"}
    ),
    "schedule_suspended.yaml": Scenario(
        "", {}, {"trigger": SCHEDULE, "suspend": True}, Observed(cronjob())
    ),
    "once.yaml": Scenario(
        "", {}, {"trigger": ONCE}, Observed(None, (job("worker", complete=True),))
    ),
    "continuous.yaml": Scenario("", {}, CONT2, Observed(deployment()), {"desired_replicas": 2}),
}


def action_input(name: str) -> dict[str, Any]:
    obj = ACTION_INPUTS[name].object()
    if name == "schedule.yaml":
        # The operator handled the last request: status.runNowHandled holds its value.
        obj["status"]["runNowHandled"] = "7"
    return obj


def with_changes(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> Any:
    out = copy.deepcopy(obj)
    change(out)
    return out


def _annotate(value: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["metadata"].setdefault("annotations", {})["bgjob.dev/run-now"] = value

    return change


def _suspend(value: bool) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["spec"]["suspend"] = value

    return change


# (action, input, expected output file, how the output differs from the input)
ACTIONS = [
    ("run-now", "schedule.yaml", "schedule_run-now.yaml", _annotate("8")),
    ("run-now", "once.yaml", "once_run-now.yaml", _annotate("1")),
    ("suspend", "schedule.yaml", "schedule_after-suspend.yaml", _suspend(True)),
    ("resume", "schedule_suspended.yaml", "schedule_after-resume.yaml", _suspend(False)),
    ("suspend", "continuous.yaml", "continuous_after-suspend.yaml", _suspend(True)),
]


def offered(run_now: bool, suspend: bool, resume: bool) -> list[dict[str, Any]]:
    return [
        {"name": "resume", "disabled": not resume, "iconClass": "fa fa-fw fa-play-circle",
         "displayName": "Resume"},
        {"name": "run-now", "disabled": not run_now, "iconClass": "fa fa-fw fa-play",
         "displayName": "Run now"},
        {"name": "suspend", "disabled": not suspend, "iconClass": "fa fa-fw fa-pause-circle",
         "displayName": "Suspend"},
    ]  # fmt: skip


DISCOVERY = {
    "schedule.yaml": offered(run_now=True, suspend=True, resume=False),
    "schedule_suspended.yaml": offered(run_now=True, suspend=False, resume=True),
    "once.yaml": offered(run_now=True, suspend=True, resume=False),
    "continuous.yaml": offered(run_now=False, suspend=True, resume=False),
}


# --- the committed files ----------------------------------------------------------------


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100)


def generated() -> dict[Path, str]:
    """Every testdata and *_test.yaml file, from status_from and the tables above."""
    files: dict[Path, str] = {}
    for scenario in HEALTH:
        files[HERE / "testdata" / scenario.file] = dump(scenario.object())
    files[HERE / "health_test.yaml"] = dump(
        {
            "tests": [
                {"healthStatus": dict(s.expected), "inputPath": f"testdata/{s.file}"}
                for s in HEALTH
            ]
        }
    )
    data = HERE / "actions" / "testdata"
    for name in ACTION_INPUTS:
        files[data / name] = dump(action_input(name))
    for _, source, output, change in ACTIONS:
        files[data / output] = dump(with_changes(action_input(source), change))
    files[HERE / "actions" / "action_test.yaml"] = dump(
        {
            "discoveryTests": [
                {"inputPath": f"testdata/{name}", "result": result}
                for name, result in DISCOVERY.items()
            ],
            "actionTests": [
                {
                    "action": action,
                    "inputPath": f"testdata/{source}",
                    "expectedOutputPath": f"testdata/{output}",
                }
                for action, source, output, _ in ACTIONS
            ],
        }
    )
    return files


def test_the_committed_testdata_is_what_status_from_produces() -> None:
    files = generated()
    if UPDATE:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    stale = [str(p.relative_to(HERE)) for p, text in files.items() if p.read_text() != text]
    assert not stale, f"regenerate with UPDATE_GOLDEN=1: {stale}"
    committed = {p for p in HERE.rglob("*.yaml")}
    assert committed == set(files), "testdata files that no test produces"


# --- health -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", HEALTH, ids=[s.file for s in HEALTH])
def test_health_of_a_status_written_by_status_from(vm: Runner, scenario: Scenario) -> None:
    assert health(vm, scenario.object()) == scenario.expected


def test_health_test_yaml_passes_as_argo_cds_harness_reads_it(vm: Runner) -> None:
    cases = yaml.safe_load((HERE / "health_test.yaml").read_text())["tests"]
    assert len(cases) == len(HEALTH)
    statuses = set()
    for case in cases:
        obj = yaml.safe_load((HERE / case["inputPath"]).read_text())
        expected = {"status": case["healthStatus"]["status"], "message": ""}
        expected["message"] = case["healthStatus"].get("message", "")
        assert health(vm, obj) == expected, case["inputPath"]
        statuses.add(expected["status"])
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_a_status_for_an_older_generation_is_progressing_even_if_it_says_degraded(
    vm: Runner,
) -> None:
    obj = HEALTH[[s.file for s in HEALTH].index("degraded_invalidTimeZone.yaml")].object()
    obj["metadata"]["generation"] = 2  # the user fixed the spec; the operator has not looked
    assert health(vm, obj) == progressing("Waiting for the operator to observe generation 2")


def test_a_ready_condition_for_an_older_generation_is_not_trusted(vm: Runner) -> None:
    obj = HEALTH[0].object()
    obj["metadata"]["generation"] = 2
    obj["status"]["observedGeneration"] = 2  # conditions still say generation 1
    assert health(vm, obj)["status"] == "Progressing"


def test_an_object_without_generation_or_conditions_does_not_break_the_script(
    vm: Runner,
) -> None:
    obj = {"apiVersion": "bgjob.dev/v1alpha1", "kind": "BackgroundJob", "metadata": {}}
    assert health(vm, {**obj, "status": {}}) == progressing("Waiting for the Ready condition")
    failed = {**obj, "status": {"state": "Failed"}}
    assert health(vm, failed) == degraded("The BackgroundJob is Failed")


# --- actions ------------------------------------------------------------------------------


def test_action_test_yaml_passes_as_argo_cds_harness_reads_it(vm: Runner) -> None:
    spec = yaml.safe_load((HERE / "actions" / "action_test.yaml").read_text())
    for case in spec["discoveryTests"]:
        obj = yaml.safe_load((HERE / "actions" / case["inputPath"]).read_text())
        assert discover(vm, obj) == sorted(case["result"], key=str), case["inputPath"]
    for case in spec["actionTests"]:
        obj = yaml.safe_load((HERE / "actions" / case["inputPath"]).read_text())
        expected = yaml.safe_load((HERE / "actions" / case["expectedOutputPath"]).read_text())
        assert act(vm, case["action"], obj) == expected, case


def test_run_now_always_sets_a_value_the_operator_has_not_handled(vm: Runner) -> None:
    obj = action_input("schedule.yaml")
    # kubectl annotate ... run-now=$(date +%s) was handled; the annotation was removed.
    del obj["metadata"]["annotations"]
    obj["status"]["runNowHandled"] = "1763900000"
    out = act(vm, "run-now", obj)
    assert out["metadata"]["annotations"] == {"bgjob.dev/run-now": "1763900001"}
    # A value that is no number (set by hand) is replaced by one that differs.
    obj["metadata"]["annotations"] = {"bgjob.dev/run-now": "by-hand", "team": "shop"}
    obj["status"]["runNowHandled"] = "by-hand"
    out = act(vm, "run-now", obj)
    assert out["metadata"]["annotations"] == {"bgjob.dev/run-now": "1", "team": "shop"}


def test_actions_change_nothing_else(vm: Runner) -> None:
    for action, source, _, change in ACTIONS:
        obj = action_input(source)
        assert act(vm, action, obj) == with_changes(obj, change)


def test_scripts_use_nothing_gopher_lua_lacks() -> None:
    """Lua 5.2+ syntax (goto, //, bitwise operators) fails in gopher-lua and 5.1 above;
    this catches library calls the VMs could miss in untested branches."""
    for script in HERE.rglob("*.lua"):
        text = script.read_text()
        for banned in ("string.", "math.", ":sub(", ":find(", ":match(", ":gsub(", "goto "):
            assert banned not in text, f"{script.name} uses {banned}"


# --- the argocd-cm patch ------------------------------------------------------------------

PATCH = REPO / "contrib" / "argocd" / "argocd-cm-patch.yaml"
KEY = "bgjob.dev_BackgroundJob"


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "".join(pad + line if line.strip() else "\n" for line in text.splitlines(True))


def argocd_cm_patch() -> str:
    """argocd-cm keys that install the health check and the actions, from the files."""
    actions = f"discovery.lua: |\n{_block((HERE / 'actions' / 'discovery.lua').read_text(), 2)}"
    actions += "definitions:\n"
    for name in ("run-now", "suspend", "resume"):
        script = (HERE / "actions" / name / "action.lua").read_text()
        actions += f"- name: {name}\n  action.lua: |\n{_block(script, 4)}"
    return (
        "# Generated by tests/unit/test_argocd.py from resource_customizations/: do not edit.\n"
        "# kubectl -n argocd patch configmap argocd-cm \\\n"
        "#   --patch-file contrib/argocd/argocd-cm-patch.yaml\n"
        "data:\n"
        f"  resource.customizations.health.{KEY}: |\n"
        f"{_block((HERE / 'health.lua').read_text(), 4)}"
        f"  resource.customizations.actions.{KEY}: |\n"
        f"{_block(actions, 4)}"
    )


def test_the_argocd_cm_patch_carries_the_scripts_as_argo_cd_reads_them() -> None:
    if UPDATE:
        PATCH.write_text(argocd_cm_patch())
    assert PATCH.read_text() == argocd_cm_patch(), "regenerate with UPDATE_GOLDEN=1"
    data = yaml.safe_load(PATCH.read_text())["data"]
    assert data[f"resource.customizations.health.{KEY}"] == (HERE / "health.lua").read_text()
    # Argo CD parses the actions value as YAML: discovery.lua and definitions[].action.lua.
    actions = yaml.safe_load(data[f"resource.customizations.actions.{KEY}"])
    assert actions["discovery.lua"] == (HERE / "actions" / "discovery.lua").read_text()
    assert [d["name"] for d in actions["definitions"]] == ["run-now", "suspend", "resume"]
    for definition in actions["definitions"]:
        script = HERE / "actions" / definition["name"] / "action.lua"
        assert definition["action.lua"] == script.read_text()
