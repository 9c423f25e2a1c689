"""`--log-format`: every line is valid logfmt (text) or one JSON object (json)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logfmt_parser import parse_logfmt

from bgjob import logs
from bgjob.cli import parser


def test_the_parser_rejects_what_logfmt_is_not() -> None:
    assert parse_logfmt('a=1 b="x y" c=""') == {"a": "1", "b": "x y", "c": ""}
    for bad in ["a=x y", 'a="x', "a=1  b=2", "a=1 a=2", 'a=x"y', "a=b=c", "=1", "a"]:
        with pytest.raises(AssertionError):
            parse_logfmt(bad)


# --- records as the operator and kopf make them -------------------------------------------


@pytest.fixture
def capture() -> Iterator[dict[str, io.StringIO]]:
    streams = {fmt: io.StringIO() for fmt in logs.FORMATS}
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    handlers = []
    for fmt, stream in streams.items():
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(fmt))
        handlers.append(handler)
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG)
    yield streams
    root.handlers[:], root.level = before


def emit_like_the_operator() -> None:
    """The operator's own call sites, a kopf object log and an exception."""
    log = logging.getLogger("bgjob.reconcile")
    log.info("started run=%s namespace=%s", "nightly-m1a2b3c4", "shop")
    log.info("%s kind=%s name=%s namespace=%s", "created", "Deployment", "worker", "shop")
    log.info("waiting for lease=%s/%s identity=%s", "bgjob-system", "bgjob-operator", "pod a")
    log.warning("event not recorded reason=%s error=%s", "RunFailed", 'HTTP 422: "bad" = no')
    log.info("starting version=%s health=%s:%d", "0.1.0", "127.0.0.1", 8080)
    log.info("a plain message with 100%% and no %s", "fields")
    log.info("odd shape key=%s then words", "value")
    log.debug("new\nline\tand tab and \x01 control")
    try:
        raise ValueError('broken "spec"\nsecond line')
    except ValueError:
        logging.getLogger("bgjob.operator").exception(
            "reconcile failed namespace=%s name=%s retry_in=%.1fs", "shop", "worker", 2.5
        )
    kopf = logging.getLogger("kopf.objects")
    kopf.warning(
        "Patching failed with inconsistencies: (%r,)",
        ("remove", ("status",)),
        extra={
            "k8s_ref": {"kind": "BackgroundJob", "namespace": "shop", "name": "worker"},
            "k8s_skip": True,
        },
    )


def test_every_text_line_is_valid_logfmt(capture: dict[str, io.StringIO]) -> None:
    emit_like_the_operator()
    lines = capture["text"].getvalue().splitlines()
    assert len(lines) == 10
    parsed = [parse_logfmt(line) for line in lines]
    for fields in parsed:
        assert {"time", "level", "logger", "msg"} <= set(fields)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["time"])
    started, created, lease, event, starting, plain, odd, newline, failed, kopf = parsed
    assert started["msg"] == "started" and started["run"] == "nightly-m1a2b3c4"
    assert created["msg"] == "created" and created["kind"] == "Deployment"
    assert lease["lease"] == "bgjob-system/bgjob-operator" and lease["identity"] == "pod a"
    assert event["error"] == 'HTTP 422: "bad" = no'
    assert starting["health"] == "127.0.0.1:8080"
    assert plain["msg"] == "a plain message with 100% and no fields"
    assert odd["msg"] == "odd shape key=value then words"
    assert newline["msg"] == "new\nline\tand tab and \x01 control"
    assert failed["level"] == "error" and failed["retry_in"] == "2.5s"
    assert failed["exc"].startswith("Traceback (most recent call last):\n")
    assert failed["exc"].endswith('ValueError: broken "spec"\nsecond line')
    assert kopf["object"] == "shop/worker" and kopf["object_kind"] == "BackgroundJob"
    assert kopf["logger"] == "kopf.objects" and "k8s_skip" not in kopf


def test_every_json_line_is_one_object(capture: dict[str, io.StringIO]) -> None:
    emit_like_the_operator()
    lines = capture["json"].getvalue().splitlines()
    assert len(lines) == 10
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert all(isinstance(fields, dict) for fields in parsed)
    started, *_, starting, _, _, _, failed, kopf = parsed
    assert started == {
        "time": started["time"],
        "level": "info",
        "logger": "bgjob.reconcile",
        "msg": "started",
        "run": "nightly-m1a2b3c4",
        "namespace": "shop",
    }
    assert starting["health"] == "127.0.0.1:8080"
    assert failed["name"] == "worker" and "second line" in failed["exc"]
    assert failed["exc"].splitlines()[0] == "Traceback (most recent call last):"
    assert kopf["object"] == "shop/worker" and kopf["msg"].startswith("Patching failed")


def test_json_keeps_numbers_as_numbers(capture: dict[str, io.StringIO]) -> None:
    logging.getLogger("bgjob.operator").info("started workers=%d children=%d", 4, 12)
    line = json.loads(capture["json"].getvalue())
    assert (line["workers"], line["children"]) == (4, 12)


@given(st.text(), st.text())
def test_any_text_survives_a_logfmt_round_trip(message: str, value: str) -> None:
    record = logging.LogRecord(
        "bgjob.x", logging.INFO, __file__, 1, "%s key=%s", (message, value), None
    )
    text = logs.LogfmtFormatter().format(record)
    fields = parse_logfmt(text)
    assert fields["key"] == value
    assert fields["msg"] == message
    assert json.loads(logs.JsonFormatter().format(record))["key"] == value


# --- the command line ---------------------------------------------------------------------


def test_run_takes_log_format_text_by_default_and_json() -> None:
    assert parser().parse_args(["run"]).log_format == "text"
    assert parser().parse_args(["run", "--log-format=json"]).log_format == "json"
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--log-format=yaml"])


def test_configure_routes_kopf_through_the_same_formatter() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    try:
        logs.configure("info", "json", stream)
        logging.getLogger("kopf.objects").warning("from kopf")
        logging.getLogger("kopf.activities").info("kopf at info is quiet")
        logging.getLogger("bgjob.cli").info("ours")
    finally:
        root.handlers[:], root.level = before
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("kopf.objects", "from kopf"),
        ("bgjob.cli", "ours"),
    ]
