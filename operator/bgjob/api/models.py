"""The BackgroundJob API (bgjob.dev/v1alpha1) as pydantic models.

These models are the single source of truth: the CRD schema is generated from
them (``bgjob.api.crd``), and the operator parses every object through them.
Field names, defaults and rules follow the contract in docs/api.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from bgjob.api import urls
from bgjob.api.cron import CRON_MESSAGE, CRON_PATTERN, valid_cron
from bgjob.api.rules import INT32_MAX, FieldRule, Rule, exactly_one, exactly_one_cel
from bgjob.api.schema import errors as schema_errors
from bgjob.api.schema import podspec_schema

GROUP = "bgjob.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BackgroundJob"
PLURAL = "backgroundjobs"
SINGULAR = "backgroundjob"
SHORT_NAMES = ["bgj", "bgjob"]

# Children are named after the BackgroundJob and carry it in label values; the
# StatefulSet's controller-revision-hash label and CronJob's Job names leave
# room for 52 characters (the same limit CronJob names have).
MAX_NAME_LENGTH = 52

# A password in the userinfo part of a URL (scheme://user:password@host), or in
# its query string (?password=..., which redis clients honour).
URL_WITH_PASSWORD = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@|[?&]password="

# Kubernetes types we pass through to the pod as they are; the API server
# validates them when the workload is applied.
Quantity = Annotated[
    str | int,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def _enforce(rule: FieldRule) -> AfterValidator:
    def check(value: Any) -> Any:
        if not rule.holds(value):
            raise RuleViolation("", rule.message)
        return value

    return AfterValidator(check)


def in_crd(rule: FieldRule) -> dict[str, Any]:
    """The ``json_schema_extra`` that writes a field rule into the field's CRD node."""
    return {"x-kubernetes-validations": [rule.as_crd()]}


class RuleViolation(ValueError):
    """A cross-field rule that does not hold, with the field it is about."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field_path = field_path
        self.message = message


class InvalidSpec(ValueError):
    """A BackgroundJob that breaks the API contract; the message names each field."""


def describe(error: ValidationError) -> str:
    """One line per problem, each starting with the field path: 'spec.concurrency: ...'."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolation):
            where = (where + cause.field_path) if cause.field_path else where
            message = cause.message
        else:
            message = item["msg"]
            if "input" in item and item["type"] not in ("missing", "model_type"):
                message += f" (got {item['input']!r})"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


class ApiModel(BaseModel):
    """Base for every API object: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # No coercion: "3" is not an integer and "yes" not a boolean, as at admission.
        strict=True,
    )
    # Cross-field rules of this node, enforced here and written into the CRD.
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _prune_nulls(cls, data: Any) -> Any:
        """An explicit null is as if the field were absent: the API server prunes nulls
        of fields that are not nullable (none of ours is) and then applies defaults."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in self.rules:
            if not rule.holds(self):
                raise RuleViolation(rule.field_path, rule.message)
        return self

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- what runs -------------------------------------------------------------------


def _core_v1(*path: str) -> tuple[AfterValidator, WithJsonSchema]:
    """A dict typed by a part of the Container schema (api/podspec.schema.json),
    checked in Python and written into the CRD, like the pod template."""
    node = podspec_schema()["properties"]["containers"]["items"]
    for name in path:
        node = node["items"] if name == "[]" else node["properties"][name]
    schema: dict[str, Any] = {k: v for k, v in node.items() if k != "description"}

    def check(value: dict[str, Any]) -> dict[str, Any]:
        problems = schema_errors(schema, value)
        if problems:
            where, message = problems[0]
            raise RuleViolation(where, message)
        return value

    return AfterValidator(check), WithJsonSchema(schema)


_ENV_VAR_SOURCE = _core_v1("env", "[]", "valueFrom")
_CONFIG_MAP_ENV_SOURCE = _core_v1("envFrom", "[]", "configMapRef")
_SECRET_ENV_SOURCE = _core_v1("envFrom", "[]", "secretRef")
EnvVarSource = Annotated[dict[str, Any], _ENV_VAR_SOURCE[0], _ENV_VAR_SOURCE[1]]
ConfigMapEnvSource = Annotated[dict[str, Any], _CONFIG_MAP_ENV_SOURCE[0], _CONFIG_MAP_ENV_SOURCE[1]]
SecretEnvSource = Annotated[dict[str, Any], _SECRET_ENV_SOURCE[0], _SECRET_ENV_SOURCE[1]]


def _unique_names(value: list[EnvVar] | None) -> list[EnvVar] | None:
    seen: set[str] = set()
    for index, var in enumerate(value or []):
        if var.name in seen:
            raise RuleViolation(f"[{index}]", f"Duplicate value: {var.name!r}")
        seen.add(var.name)
    return value


class EnvVar(ApiModel):
    """An environment variable for the worker container (core/v1 EnvVar)."""

    name: str = Field(description="Name of the environment variable.", min_length=1)
    value: str | None = Field(default=None, description="A literal value.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Source for the value: secretKeyRef, configMapKeyRef, fieldRef or "
        "resourceFieldRef, as in core/v1 EnvVarSource.",
    )


class EnvFromSource(ApiModel):
    """A source of environment variables (core/v1 EnvFromSource)."""

    prefix: str | None = Field(default=None, description="Prefix added to every key.")
    config_map_ref: ConfigMapEnvSource | None = Field(
        default=None, description="A ConfigMap whose keys become variables: {name, optional}."
    )
    secret_ref: SecretEnvSource | None = Field(
        default=None, description="A Secret whose keys become variables: {name, optional}."
    )


class Resources(ApiModel):
    """Compute resources of the worker container (core/v1 ResourceRequirements)."""

    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources, e.g. {cpu: 500m, memory: 256Mi}."
    )
    requests: dict[str, Quantity] | None = Field(
        default=None, description="Resources the scheduler reserves, e.g. {cpu: 100m}."
    )


class TemplateMetadata(ApiModel):
    """Labels and annotations added to every pod."""

    labels: dict[str, str] | None = Field(default=None, description="Extra pod labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Extra pod annotations.")


def _valid_podspec(value: dict[str, Any]) -> dict[str, Any]:
    problems = schema_errors(podspec_schema(), value)
    if problems:
        where, message = problems[0]
        rest = "".join(f"; spec.template.spec{w}: {m}" for w, m in problems[1:])
        raise RuleViolation(where, message + rest)
    return value


# A core/v1 PodSpec, as the API server itself describes it (hack/podspec_schema.py).
PodSpecOverlay = Annotated[
    dict[str, Any],
    AfterValidator(_valid_podspec),
    WithJsonSchema(podspec_schema()),
]


class PodTemplateOverlay(ApiModel):
    """An overlay merged into the generated pod; fields set on the spec win over it."""

    metadata: TemplateMetadata | None = Field(
        default=None, description="Labels and annotations added to the pod."
    )
    spec: PodSpecOverlay | None = Field(
        default=None,
        description="A core/v1 PodSpec merged into the generated one: nodeSelector, "
        "tolerations, affinity, securityContext, volumes, imagePullSecrets, "
        "priorityClassName; containers[name=worker] adds volumeMounts or a securityContext "
        "to the worker container.",
    )


# --- when it runs ------------------------------------------------------------------


class ContinuousTrigger(ApiModel):
    """Run all the time, like a hosted service; restarted when it exits."""


class ScheduleTrigger(ApiModel):
    """Run on a cron schedule, like a CronJob."""

    cron: str = Field(
        description='Cron expression as a CronJob takes it: five fields, e.g. "0 3 * * *", '
        "or @daily, @hourly and the other macros (not @every).",
        min_length=1,
        max_length=128,
    )
    time_zone: str = Field(
        default="UTC", description="IANA time zone the schedule is read in.", max_length=64
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="A run that could not start within this many seconds of its time is skipped.",
    )

    rules = (
        Rule(
            cel=f"self.cron.matches(r'{CRON_PATTERN}')",
            message=CRON_MESSAGE,
            field_path=".cron",
            holds=lambda s: valid_cron(s.cron),
        ),
    )


# RFC 3339 (a date, "T", a time, an offset), as CEL's timestamp() reads it.
RFC3339 = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
MAX_DELAY_SECONDS = 366 * 24 * 3600


def _before_year_9999(value: str) -> bool:
    if re.fullmatch(RFC3339, value) is None:
        return False
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC).year < 9999
    except (ValueError, OverflowError):  # 31 April, or before year 1 in UTC
        return False


AT_RULE = FieldRule(
    cel=f"self.matches(r'{RFC3339}') && timestamp(self).getFullYear() < 9999",
    message="must be an RFC 3339 time with an offset before the year 9999, "
    "e.g. 2026-12-01T03:00:00Z",
    holds=_before_year_9999,
)


def _parse_at(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value  # built in Python, not read from the wire
    if not isinstance(value, str) or not AT_RULE.holds(value):
        raise RuleViolation("", AT_RULE.message)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


RunTime = Annotated[
    datetime,
    BeforeValidator(_parse_at),
    WithJsonSchema({"type": "string", "maxLength": 64}),
    Field(strict=False),
]


class OnceTrigger(ApiModel):
    """Run once: now, at a time (PerformAt) or after a delay (PerformIn)."""

    at: RunTime | None = Field(
        default=None,
        description="When to run: an RFC 3339 time with an offset, e.g. "
        "2026-12-01T03:00:00Z or 2026-12-01T04:00:00+01:00. In the past: run now.",
        json_schema_extra=in_crd(AT_RULE),
    )
    delay_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Run this many seconds after the BackgroundJob was created (at most a year).",
    )

    rules = (
        Rule(
            cel="!(has(self.at) && has(self.delaySeconds))",
            message="set at most one of at and delaySeconds",
            field_path=".delaySeconds",
            holds=lambda s: s.at is None or s.delay_seconds is None,
        ),
    )


# What the API server accepts as a Secret's name (a DNS-1123 subdomain) and as a
# key in its data; anything else (``..``, ``/``) would make the Secret's REST path
# point somewhere else with the operator's own permissions.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


class SecretKeyRef(ApiModel):
    """A key in a Secret in the BackgroundJob's namespace."""

    name: str = Field(
        description="Name of the Secret, in the BackgroundJob's namespace.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(
        description="Key within the Secret.", min_length=1, max_length=253, pattern=SECRET_KEY
    )


class UrlFrom(ApiModel):
    """Where to read a URL that carries credentials."""

    secret_key_ref: SecretKeyRef = Field(description="The Secret key holding the URL.")


class Broker(ApiModel):
    """Where a broker is: a URL without credentials, or a Secret key holding the URL."""

    # What the backend's probe reads beyond a count: job starts and finishes (the
    # cooldown counts from the last), and the names of the workers busy with a job.
    work_aware: ClassVar[bool] = False
    names_busy_workers: ClassVar[bool] = False

    url: str | None = Field(
        default=None,
        max_length=2048,
        description="The broker's URL without a password or query options, e.g. "
        "redis://host:6379/0 or amqp://host:5672/vhost.",
    )
    url_from: UrlFrom | None = Field(
        default=None, description="Read the URL (with credentials) from a Secret."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=exactly_one_cel("url", "urlFrom"),
            message="set exactly one of url and urlFrom",
            holds=lambda s: exactly_one(s, "url", "url_from"),
        ),
        Rule(
            cel=f"!has(self.url) || !self.url.matches(r'{URL_WITH_PASSWORD}')",
            message="must not contain a password; keep the URL in a Secret and use "
            "urlFrom.secretKeyRef",
            field_path=".url",
            holds=lambda s: s.url is None or re.match(URL_WITH_PASSWORD, s.url) is None,
        ),
    )


def broker_url_rules(backend: str) -> tuple[Rule, ...]:
    """The URL policy (bgjob.api.urls) of one backend's ``url``, in CEL and Python."""
    schemes = urls.SCHEMES[backend]

    def parts(s: Broker) -> urls.Parts | None:
        return None if s.url is None else urls.split(s.url)

    listed = ", ".join(f"'{scheme}'" for scheme in schemes)
    return (
        Rule(
            cel=f"!has(self.url) || ({urls.cel_shape('url')})",
            message="must be a URL such as "
            + ("redis://host:6379/0" if backend == "redis" else "amqp://host:5672/vhost")
            + ": RFC 3986 characters, percent-escapes well formed, no fragment",
            field_path=".url",
            holds=lambda s: s.url is None or parts(s) is not None,
        ),
        Rule(
            cel=urls.cel_guarded("url", f"U.getScheme() in [{listed}]"),
            message=f"scheme must be {' or '.join(schemes)}",
            field_path=".url",
            holds=lambda s: (p := parts(s)) is None or p.scheme in schemes,
        ),
        Rule(
            cel=urls.cel_matches("url", urls.HOST_RULE),
            message="must name a host: a DNS name or an IP address",
            field_path=".url",
            holds=lambda s: parts(s) is None or urls.host_ok(s.url),
        ),
        Rule(
            cel=urls.cel_matches("url", urls.PORT_RULE),
            message="port must be a number from 1 to 65535",
            field_path=".url",
            holds=lambda s: parts(s) is None or urls.port_ok(s.url),
        ),
        Rule(
            cel="!has(self.url) || !self.url.contains('?')",
            message="must not carry query options (socket_timeout, stack_timeout, password, "
            "...): the operator sets its own timeouts, and credentials belong in a Secret "
            "(urlFrom)",
            field_path=".url",
            holds=lambda s: s.url is None or "?" not in s.url,
        ),
        Rule(
            cel=urls.cel_matches("url", urls.PATH_RULES[backend]),
            message="path must be a database number, e.g. /0"
            if backend == "redis"
            else "path must be one vhost, e.g. /%2F or /orders",
            field_path=".url",
            holds=lambda s: parts(s) is None or urls.path_ok(s.url, backend),
        ),
    )


class RedisQueue(Broker):
    """A Redis list; the backlog is its length (LLEN)."""

    list: str = Field(description="Name of the Redis list.", min_length=1, max_length=1024)

    rules = (*Broker.rules, *broker_url_rules("redis"))


class RabbitMQQueue(Broker):
    """A RabbitMQ queue; the backlog is its ready messages (plus unacknowledged ones when
    the management API is given)."""

    queue: str = Field(description="Name of the queue.", min_length=1, max_length=255)
    management_url: str | None = Field(
        default=None,
        max_length=2048,
        description="The management API, e.g. https://rabbitmq:15671, without credentials, "
        "query or fragment. It is called with the AMQP URL's user and password, and only "
        "when its host is the AMQP URL's host; redirects are errors. When set, the backlog "
        "is ready plus unacknowledged messages, so workers busy with messages count too.",
    )
    allow_insecure_management: bool = Field(
        default=False,
        description="Allow an http:// managementUrl: the broker's credentials then cross "
        "the network in clear text. Off by default: managementUrl must be https.",
    )

    rules = (
        *Broker.rules,
        *broker_url_rules("rabbitmq"),
        Rule(
            cel="!has(self.managementUrl) || "
            f"({urls.cel_shape('managementUrl', urls.MANAGEMENT_SHAPE)})",
            message="must be an http(s) URL without credentials, query or fragment, "
            "e.g. https://rabbitmq:15671",
            field_path=".managementUrl",
            holds=lambda s: (
                s.management_url is None
                or urls.split(s.management_url, urls.MANAGEMENT_SHAPE) is not None
            ),
        ),
        Rule(
            cel=urls.cel_matches("managementUrl", urls.HOST_RULE, urls.MANAGEMENT_SHAPE),
            message="must name a host: a DNS name or an IP address",
            field_path=".managementUrl",
            holds=lambda s: (
                s.management_url is None
                or urls.split(s.management_url, urls.MANAGEMENT_SHAPE) is None
                or urls.host_ok(s.management_url)
            ),
        ),
        Rule(
            cel=urls.cel_matches("managementUrl", urls.PORT_RULE, urls.MANAGEMENT_SHAPE),
            message="port must be a number from 1 to 65535",
            field_path=".managementUrl",
            holds=lambda s: (
                s.management_url is None
                or urls.split(s.management_url, urls.MANAGEMENT_SHAPE) is None
                or urls.port_ok(s.management_url)
            ),
        ),
        Rule(
            cel="!has(self.managementUrl) || self.managementUrl.startsWith('https://') || "
            "(has(self.allowInsecureManagement) && self.allowInsecureManagement)",
            message="must be https: it is sent the broker's credentials (set "
            "allowInsecureManagement: true to allow http)",
            field_path=".managementUrl",
            holds=lambda s: (
                s.management_url is None
                or s.management_url.startswith("https://")
                or s.allow_insecure_management
            ),
        ),
    )


# RQ queue names are free text in RQ; here they become parts of Redis key names.
RQ_QUEUE_NAME = r"^[A-Za-z0-9][-A-Za-z0-9_.:]*$"
MAX_RQ_QUEUES = 16
MAX_SCHEDULE_LEAD_SECONDS = 300


class RQQueue(Broker):
    """RQ (python-rq) queues on a Redis server, read from RQ's own keys: the backlog is
    queued + started (in flight) + scheduled jobs that are due; busy workers are never
    scaled away and delayed jobs wake the workers shortly before they are due."""

    work_aware: ClassVar[bool] = True
    names_busy_workers: ClassVar[bool] = True

    queues: list[Annotated[str, Field(min_length=1, max_length=253, pattern=RQ_QUEUE_NAME)]] = (
        Field(
            description="Names of the RQ queues the workers listen on (rq worker QUEUE...).",
            min_length=1,
            max_length=MAX_RQ_QUEUES,
        )
    )
    schedule_lead_seconds: int = Field(
        default=5,
        ge=0,
        le=MAX_SCHEDULE_LEAD_SECONDS,
        description="How long before a scheduled job (enqueue_in, enqueue_at) is due the "
        "workers are started, so one is running when it is due: the time a pod takes to "
        "start. The workers must run RQ's scheduler (rq worker --with-scheduler).",
    )

    rules = (
        *Broker.rules,
        *broker_url_rules("redis"),
        Rule(
            cel="self.queues.all(q, self.queues.exists_one(r, r == q))",
            message="queue names must be unique",
            field_path=".queues",
            holds=lambda s: len(set(s.queues)) == len(s.queues),
        ),
    )


class CeleryQueue(Broker):
    """A Celery queue on a Redis broker (kombu's Redis transport): the backlog is the
    waiting messages plus those delivered to workers and not yet acknowledged."""

    work_aware: ClassVar[bool] = True

    queue: str = Field(
        default="celery",
        description="Name of the Celery queue (the Redis list kombu keeps it in).",
        min_length=1,
        max_length=253,
        pattern=RQ_QUEUE_NAME,
    )

    rules = (*Broker.rules, *broker_url_rules("redis"))


# A backlog is a count of messages; a billion per worker is already no limit.
MAX_BACKLOG = 1_000_000_000
MAX_COOLDOWN_SECONDS = 24 * 3600


QueueBackend = Literal["redis", "rabbitmq", "rq", "celery"]
# The backends, each a field of QueueTrigger of that name.
QUEUE_BACKENDS: tuple[QueueBackend, ...] = get_args(QueueBackend)


class QueueTrigger(ApiModel):
    """Workers scaled by the backlog of a queue, to zero when idle."""

    redis: RedisQueue | None = Field(default=None, description="A Redis list.")
    rabbitmq: RabbitMQQueue | None = Field(default=None, description="A RabbitMQ queue.")
    rq: RQQueue | None = Field(
        default=None,
        description="RQ queues: jobs queued, in flight and due; busy workers kept.",
    )
    celery: CeleryQueue | None = Field(
        default=None,
        description="A Celery queue on a Redis broker: messages waiting and unacknowledged.",
    )
    target_per_replica: int = Field(
        default=5,
        ge=1,
        le=MAX_BACKLOG,
        description="Messages per worker: replicas = ceil(backlog / this).",
    )
    activation_threshold: int = Field(
        default=0,
        ge=0,
        le=MAX_BACKLOG,
        description="Backlog above which the workers scale from 0 to 1.",
    )
    min_replicas: int = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Fewest workers, also when idle (0: scale to zero).",
    )
    polling_interval_seconds: int = Field(
        default=1,
        ge=1,
        le=3600,
        description="How often the backlog is read (one read per distinct queue, however "
        "many BackgroundJobs share it).",
    )
    cooldown_seconds: int = Field(
        default=60,
        ge=0,
        le=MAX_COOLDOWN_SECONDS,
        description="Time without backlog before scaling down to minReplicas (at most a day). "
        "rq and celery: time since the last job started or finished.",
    )

    @property
    def backend(self) -> QueueBackend:
        """Which queue backend is set."""
        for name in QUEUE_BACKENDS:
            if getattr(self, name) is not None:
                return name
        raise ValueError("no queue backend set")

    @property
    def broker(self) -> Broker:
        """The backend's broker settings (url or urlFrom)."""
        found: Broker | None = getattr(self, self.backend)
        assert found is not None
        return found

    rules = (
        Rule(
            cel=exactly_one_cel(*QUEUE_BACKENDS),
            message="set exactly one queue backend: redis, rabbitmq, rq or celery",
            holds=lambda s: exactly_one(s, *QUEUE_BACKENDS),
        ),
    )


TRIGGER_KINDS = ("continuous", "schedule", "once", "queue")
TriggerKind = Literal["continuous", "schedule", "once", "queue"]


def broker_model(backend: QueueBackend) -> type[Broker]:
    """The model of a backend: the type of QueueTrigger's field of that name."""
    annotation = QueueTrigger.model_fields[backend].annotation
    model = next(a for a in get_args(annotation) if a is not type(None))
    assert isinstance(model, type) and issubclass(model, Broker)
    return model


# Backends whose cooldown counts from the last job started or finished, and those that
# also name the busy workers (scale-in keeps them).
WORK_AWARE: frozenset[str] = frozenset(b for b in QUEUE_BACKENDS if broker_model(b).work_aware)
NAMES_BUSY_WORKERS: frozenset[str] = frozenset(
    b for b in QUEUE_BACKENDS if broker_model(b).names_busy_workers
)


class Trigger(ApiModel):
    """When the work runs: exactly one of continuous, schedule, once or queue."""

    continuous: ContinuousTrigger | None = Field(
        default=None, description="Run all the time, like a hosted service."
    )
    schedule: ScheduleTrigger | None = Field(default=None, description="Run on a cron schedule.")
    once: OnceTrigger | None = Field(
        default=None, description="Run once: now, at a time or after a delay."
    )
    queue: QueueTrigger | None = Field(
        default=None, description="Scale workers with the backlog of a queue."
    )

    rules = (
        Rule(
            cel=exactly_one_cel(*TRIGGER_KINDS),
            message="set exactly one trigger: continuous, schedule, once or queue",
            holds=lambda s: exactly_one(s, *TRIGGER_KINDS),
        ),
    )

    @property
    def kind(self) -> TriggerKind:
        """Which of the four triggers is set."""
        for name in TRIGGER_KINDS:
            if getattr(self, name) is not None:
                return name  # type: ignore[return-value]
        raise ValueError("no trigger set")


# --- how it stops, runs and keeps history --------------------------------------------


class Shutdown(ApiModel):
    """How a worker stops: an optional drain pause, SIGTERM, then a bounded wait."""

    grace_period_seconds: int = Field(
        default=30,
        ge=0,
        le=INT32_MAX,
        description="Seconds between SIGTERM and SIGKILL; also passed to the worker as "
        "BGJOB_SHUTDOWN_TIMEOUT_SECONDS.",
    )
    pre_stop_sleep_seconds: int = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Pause before SIGTERM, e.g. to drain connections; added to the pod's "
        "grace period, so the worker still gets gracePeriodSeconds after SIGTERM.",
    )


class RunSettings(ApiModel):
    """Settings of runs that complete (schedule, once)."""

    backoff_limit: int = Field(
        default=3, ge=0, le=INT32_MAX, description="Retries before a run fails."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="A run still going after this long is failed."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Delete a finished run's Job after this long."
    )


class History(ApiModel):
    """How many finished runs to keep."""

    successful_runs: int = Field(
        default=3, ge=0, le=INT32_MAX, description="Succeeded runs to keep."
    )
    failed_runs: int = Field(default=1, ge=0, le=INT32_MAX, description="Failed runs to keep.")


Overlap = Literal["Allow", "Forbid", "Replace"]


class BackgroundJobSpec(ApiModel):
    """What runs, when, how many at once, and how it stops."""

    image: str = Field(description="Container image of the worker.", min_length=1)
    command: list[str] | None = Field(default=None, description="Entrypoint override.")
    args: list[str] | None = Field(default=None, description="Arguments to the entrypoint.")
    env: Annotated[list[EnvVar] | None, AfterValidator(_unique_names)] = Field(
        default=None, description="Environment variables; each name once."
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None, description="ConfigMaps and Secrets whose keys become variables."
    )
    resources: Resources | None = Field(default=None, description="CPU and memory.")
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount the worker pods run as."
    )
    template: PodTemplateOverlay | None = Field(
        default=None, description="Overlay for the pod: labels, scheduling, volumes, security."
    )
    trigger: Trigger = Field(description="When the work runs: exactly one trigger.")
    concurrency: int = Field(
        default=1,
        ge=1,
        le=INT32_MAX,
        description="How many at once. continuous: replicas; queue: most replicas; "
        "schedule and once: pods per run.",
    )
    singleton: bool = Field(
        default=False,
        description="Never more than one instance, even during a rollout or a node failure.",
    )
    overlap: Overlap | None = Field(
        default=None,
        description="schedule only: what to do when a run is due while the last still runs. "
        "Allow, Forbid (skip the new one, the default) or Replace.",
    )
    shutdown: Shutdown = Field(
        default_factory=Shutdown,
        json_schema_extra={"default": {}},
        description="How a worker is stopped.",
    )
    run: RunSettings = Field(
        default_factory=RunSettings,
        json_schema_extra={"default": {}},
        description="Settings of runs that complete.",
    )
    history: History = Field(
        default_factory=History,
        json_schema_extra={"default": {}},
        description="Finished runs to keep.",
    )
    suspend: bool = Field(default=False, description="Start no new runs and scale workers to zero.")

    rules = (
        Rule(
            cel="!(self.singleton && self.concurrency > 1)",
            message="singleton: true allows no concurrency above 1",
            field_path=".concurrency",
            holds=lambda s: not (s.singleton and s.concurrency > 1),
        ),
        Rule(
            cel="!has(self.overlap) || has(self.trigger.schedule)",
            message="overlap applies only to a schedule trigger",
            field_path=".overlap",
            reason="FieldValueForbidden",
            holds=lambda s: s.overlap is None or s.trigger.schedule is not None,
        ),
        Rule(
            cel="!has(self.trigger.queue) || self.trigger.queue.minReplicas <= self.concurrency",
            message="trigger.queue.minReplicas must not exceed concurrency (the most replicas)",
            field_path=".trigger.queue.minReplicas",
            holds=lambda s: (
                s.trigger.queue is None or s.trigger.queue.min_replicas <= s.concurrency
            ),
        ),
    )

    @property
    def effective_overlap(self) -> Overlap:
        """The overlap policy in force: singleton forces Forbid."""
        return "Forbid" if self.singleton else (self.overlap or "Forbid")

    @property
    def parallelism(self) -> int:
        """Pods per run for the run-to-completion triggers."""
        return 1 if self.singleton else self.concurrency


# --- status -------------------------------------------------------------------------


class Condition(ApiModel):
    """A condition in the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(description="Ready, Progressing, Degraded, Stalled, Complete or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word for machines.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was set for."
    )


class WorkloadRef(ApiModel):
    """The native object that runs the work."""

    api_version: str = Field(description="apps/v1 or batch/v1.")
    kind: str = Field(description="Deployment, StatefulSet, CronJob or Job.")
    name: str = Field(description="Name of the object.")


class RunRecord(ApiModel):
    """One run (a Job) of a schedule or once BackgroundJob."""

    # Like the status around it: a field a later version records does not break this one.
    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Name of the Job.")
    start_time: str | None = Field(default=None, description="When it started.")
    completion_time: str | None = Field(default=None, description="When it finished.")
    result: Literal["Succeeded", "Failed"] | None = Field(
        default=None, description="Succeeded or Failed; unset while running."
    )
    reason: str | None = Field(
        default=None, description="Why it ended, e.g. BackoffLimitExceeded, OOMKilled."
    )
    message: str | None = Field(
        default=None,
        description="Details of the result; for a failed run, how its worker container ended, "
        "e.g. 'container worker exited with code 42 (Error)'.",
    )
    exit_code: int | None = Field(
        default=None,
        description="Exit code of the failed run's container (the worker's, or the container "
        "that failed), from its most recent failed pod; unset when the pods were gone.",
    )


State = Literal[
    "Running", "Idle", "Scheduled", "Waiting", "Succeeded", "Failed", "Suspended", "Degraded"
]


class BackgroundJobStatus(ApiModel):
    """What the operator observed, for humans (state) and tools (conditions)."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    state: State | None = Field(default=None, description="One word for humans.")
    trigger: TriggerKind | None = Field(default=None, description="Which trigger is set.")
    conditions: list[Condition] | None = Field(
        default=None, description="Ready, Progressing, Degraded, Stalled, Complete, Failed."
    )
    workload: WorkloadRef | None = Field(default=None, description="The native workload.")
    replicas: int | None = Field(default=None, description="Pods the workload has.")
    ready_replicas: int | None = Field(default=None, description="Pods that are ready.")
    desired_replicas: int | None = Field(default=None, description="Pods wanted now.")
    queue_length: int | None = Field(default=None, description="Backlog last read (queue).")
    busy_workers: int | None = Field(
        default=None, description="The pool's workers busy with a job, as last read (queue.rq)."
    )
    last_activity_time: str | None = Field(
        default=None,
        description="When a job last started or finished (queue.rq, queue.celery): the "
        "cooldown counts from here.",
    )
    last_schedule_time: str | None = Field(
        default=None, description="When a run was last scheduled."
    )
    next_run_time: str | None = Field(default=None, description="When the next run is due.")
    last_successful_time: str | None = Field(default=None, description="When a run last succeeded.")
    active_runs: list[str] | None = Field(default=None, description="Jobs running now.")
    last_run: RunRecord | None = Field(default=None, description="The latest finished run.")
    once_run_started: str | None = Field(
        default=None,
        description="When the once-run started; it never starts again (manual runs aside).",
    )
    run_now_handled: str | None = Field(
        default=None,
        description="The bgjob.dev/run-now annotation value that already started a run.",
    )


# --- the object ---------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    name: str = ""
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class BackgroundJob(ApiModel):
    """A piece of background work and how it runs."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["bgjob.dev/v1alpha1"] = "bgjob.dev/v1alpha1"
    kind: Literal["BackgroundJob"] = "BackgroundJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackgroundJobSpec
    status: BackgroundJobStatus = Field(default_factory=BackgroundJobStatus)

    rules = (
        Rule(
            cel=f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
            message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters: it names "
            "the workload and its pods",
            holds=lambda s: len(s.metadata.name) <= MAX_NAME_LENGTH,
        ),
    )


def parse(body: dict[str, Any]) -> BackgroundJob:
    """Read a BackgroundJob from its wire form; InvalidSpec names every bad field."""
    try:
        return BackgroundJob.model_validate(body)
    except ValidationError as error:
        raise InvalidSpec(describe(error)) from None
