"""Log lines a machine can parse: logfmt (``--log-format=text``) or JSON (``json``).

Every record becomes exactly one line, exceptions included (the traceback is one
field). Call sites keep the ``logging`` style ``log.info("started run=%s ns=%s",
name, ns)``: the words before the first ``key=`` are the message and each
``key=%s`` becomes a field of its own, typed in JSON. A message that does not
follow that shape is kept whole, quoted as logfmt needs. kopf's records carry the
object they are about; it becomes the ``object`` field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Literal, TextIO

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_SPEC = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGo]")
_RESERVED = frozenset({"time", "level", "logger", "msg", "object", "object_kind", "exc", "stack"})
_RAW = (str, int, float, bool)

Fields = list[tuple[str, Any]]


def _plain(record: logging.LogRecord) -> tuple[str, Fields]:
    try:
        return record.getMessage(), []
    except (TypeError, ValueError):
        return str(record.msg), []


def split_message(record: logging.LogRecord) -> tuple[str, Fields]:
    """The message words and the ``key=value`` fields of a %-style log call."""
    msg, args = record.msg, record.args
    if not isinstance(msg, str) or "%%" in msg:
        return _plain(record)
    if not isinstance(args, tuple):
        args = ()
    head: list[str] = []
    pairs: list[tuple[str, str]] = []
    for word in msg.split(" "):
        key, eq, template = word.partition("=")
        if eq and _KEY.fullmatch(key):
            pairs.append((key, template))
        elif pairs:  # words after the fields: not our shape
            return _plain(record)
        else:
            head.append(word)
    if not pairs:
        return _plain(record)
    position = 0

    def take(template: str) -> tuple[Any, ...]:
        nonlocal position
        count = len(_SPEC.findall(template))
        chunk = tuple(args[position : position + count])
        position += count
        return chunk

    try:
        text = " ".join(head)
        text = text % take(text) if "%" in text else text
        fields: Fields = []
        for key, template in pairs:
            chunk = take(template)
            value: Any
            if template in ("%s", "%d") and len(chunk) == 1 and isinstance(chunk[0], _RAW):
                value = chunk[0]
            else:
                value = template % chunk if "%" in template else template
            fields.append((f"{key}_" if key in _RESERVED else key, value))
    except (TypeError, ValueError):
        return _plain(record)
    if position != len(args):
        return _plain(record)
    return text, fields


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> Fields:
    """All fields of one record, in the order they are written."""
    message, extracted = split_message(record)
    fields: Fields = [
        ("time", _timestamp(record)),
        ("level", record.levelname.lower()),
        ("logger", record.name),
        ("msg", message),
        *extracted,
    ]
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict):
        name = ref.get("name") or ""
        namespace = ref.get("namespace")
        fields.append(("object", f"{namespace}/{name}" if namespace else name))
        if ref.get("kind"):
            fields.append(("object_kind", ref["kind"]))
    if record.exc_info:
        fields.append(("exc", formatter.formatException(record.exc_info)))
    elif record.exc_text:
        fields.append(("exc", record.exc_text))
    if record.stack_info:
        fields.append(("stack", formatter.formatStack(record.stack_info)))
    return fields


# --- logfmt -------------------------------------------------------------------------------

_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def logfmt_value(value: Any) -> str:
    """A value as logfmt writes it: bare if it can be, else quoted and escaped."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def logfmt(fields: Iterable[tuple[str, Any]]) -> str:
    """One logfmt line (without the newline)."""
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields)


class LogfmtFormatter(logging.Formatter):
    """``time=… level=info logger=bgjob.reconcile msg="…" key=value …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return logfmt(_fields(record, self))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; field values keep their JSON types."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {}
        for key, value in _fields(record, self):
            out[key] = value if value is None or isinstance(value, _RAW) else str(value)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(fmt: Format) -> logging.Formatter:
    """The formatter for a ``--log-format`` value."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return LogfmtFormatter()
    raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")


def configure(level: str, fmt: Format = "text", stream: TextIO | None = None) -> None:
    """Send every logger, kopf's and the client libraries' too, through one formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf formats nothing itself unless asked to; make sure its loggers reach ours.
    for name in ("kopf", "kopf.objects", "kopf.activities", "kubernetes", "urllib3", "aiohttp"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [
            h for h in logger.handlers if not isinstance(h, logging.StreamHandler)
        ]
        logger.propagate = True
    # kopf logs every handler call at INFO; ours say what matters.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, root.level))
    # pika logs every failed connection with a traceback; the scaler reports it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
