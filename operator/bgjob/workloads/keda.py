"""KEDA mode: a queue worker scaled by a KEDA ScaledObject instead of the built-in scaler.

Pure builders. The worker's Deployment or StatefulSet is written without
``spec.replicas`` (KEDA's HPA owns it); a ScaledObject names it as the scale
target, and credentials kept in a Secret reach KEDA through a
TriggerAuthentication that points at that Secret, so no secret is ever copied.
"""

from __future__ import annotations

import copy
from urllib.parse import quote, unquote, urlsplit

from bgjob.api.models import WORK_AWARE, BackgroundJob, QueueTrigger
from bgjob.workloads.pod import Manifest, metadata, with_spec_hash
from bgjob.workloads.services import replica_bounds

KEDA_API_VERSION = "keda.sh/v1alpha1"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
REDIS_DEFAULT_PORT = 6379
# The HPA accepts a stabilization window of at most an hour.
MAX_STABILIZATION_SECONDS = 3600


class KedaUnsupported(Exception):
    """The spec is valid, but KEDA's scalers cannot express it; names the field."""


def _queue(bgj: BackgroundJob) -> QueueTrigger:
    queue = bgj.spec.trigger.queue
    if queue is None:
        raise ValueError(f"BackgroundJob {bgj.metadata.name} has no queue trigger")
    return queue


def redis_metadata(url: str) -> dict[str, str]:
    """KEDA's redis scaler metadata for a ``redis://[user@]host[:port][/db]`` URL.

    KEDA takes the address, database index, user and TLS as separate fields.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise KedaUnsupported(
            f"spec.trigger.queue.redis.url: KEDA's redis scaler needs redis://host:port/db, "
            f"not {parts.scheme or 'no scheme'}://"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    out = {"address": f"{host}:{parts.port or REDIS_DEFAULT_PORT}"}
    database = parts.path.strip("/")
    if database:
        if not database.isdigit():
            raise KedaUnsupported(
                f"spec.trigger.queue.redis.url: database {database!r} is not a number"
            )
        out["databaseIndex"] = database
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.scheme == "rediss":
        out["enableTLS"] = "true"
    return out


def _host(url: str) -> str:
    """The URL's host as compared: lower case, no trailing dot."""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def dialed_urls(bgj: BackgroundJob) -> list[tuple[str, str]]:
    """(field, URL) of every literal URL KEDA would dial for ``bgj``: the operator's
    denied networks apply to them too (checked in preflight, without DNS; KEDA's own
    egress needs a NetworkPolicy). A URL in a Secret is not KEDA's to dial here."""
    queue = bgj.spec.trigger.queue
    if queue is None:
        return []
    backend = queue.backend
    urls = [(f"spec.trigger.queue.{backend}.url", queue.broker.url)]
    if queue.rabbitmq is not None:
        urls.append(("spec.trigger.queue.rabbitmq.managementUrl", queue.rabbitmq.management_url))
    return [(field, url) for field, url in urls if url is not None]


def _job_library_triggers(bgj: BackgroundJob) -> list[Manifest]:
    """KEDA's redis list scaler on the list of each RQ queue (rq:queue:NAME) or of the
    Celery queue: waiting jobs only."""
    queue = _queue(bgj)
    broker = queue.broker
    backend = queue.backend
    if broker.url is None:
        raise KedaUnsupported(
            f"spec.trigger.queue.{backend}.urlFrom: KEDA's redis scaler cannot read a whole "
            "URL from a Secret (it takes address and password separately); use a url "
            "without a password, or run the operator with --scaling-engine=builtin"
        )
    lists = [f"rq:queue:{name}" for name in queue.rq.queues] if queue.rq else []
    if queue.celery is not None:
        lists = [queue.celery.queue]
    return [
        {
            "type": "redis",
            "metadata": {
                **redis_metadata(broker.url),
                "listName": name,
                "listLength": str(queue.target_per_replica),
                "activationListLength": str(queue.activation_threshold),
            },
        }
        for name in lists
    ]


def _triggers(bgj: BackgroundJob) -> list[Manifest]:
    """KEDA triggers of a queue BackgroundJob."""
    if _queue(bgj).backend in WORK_AWARE:
        return _job_library_triggers(bgj)
    return [_trigger(bgj)]


def _trigger(bgj: BackgroundJob) -> Manifest:
    """The one KEDA trigger of a queue BackgroundJob."""
    queue = _queue(bgj)
    if queue.rabbitmq is not None and queue.rabbitmq.url is not None:
        field = "spec.trigger.queue.rabbitmq.managementUrl"
        management = queue.rabbitmq.management_url
        if management is not None and _host(management) != _host(queue.rabbitmq.url):
            raise KedaUnsupported(
                f"{field}: must have the AMQP URL's host (the broker's credentials go nowhere else)"
            )
    if queue.redis is not None:
        if queue.redis.url is None:
            raise KedaUnsupported(
                "spec.trigger.queue.redis.urlFrom: KEDA's redis scaler cannot read a whole "
                "URL from a Secret (it takes address and password separately); use a url "
                "without a password, or run the operator with --scaling-engine=builtin"
            )
        return {
            "type": "redis",
            "metadata": {
                **redis_metadata(queue.redis.url),
                "listName": queue.redis.list,
                "listLength": str(queue.target_per_replica),
                "activationListLength": str(queue.activation_threshold),
            },
        }
    assert queue.rabbitmq is not None
    rabbitmq = queue.rabbitmq
    trigger: Manifest = {
        "type": "rabbitmq",
        "metadata": {
            "protocol": "amqp",
            "mode": "QueueLength",
            "value": str(queue.target_per_replica),
            "activationValue": str(queue.activation_threshold),
            "queueName": rabbitmq.queue,
        },
    }
    if rabbitmq.url is not None and rabbitmq.management_url is not None:
        # Over HTTP, KEDA's QueueLength counts ready plus unacknowledged messages, as we do.
        trigger["metadata"].update(
            protocol="http", host=management_host(rabbitmq.url, rabbitmq.management_url)
        )
    elif rabbitmq.url is not None:
        trigger["metadata"]["host"] = rabbitmq.url
    else:
        trigger["authenticationRef"] = {
            "kind": "TriggerAuthentication",
            "name": bgj.metadata.name,
        }
    return trigger


def management_host(amqp_url: str, management_url: str) -> str:
    """KEDA's http host for the management API: its URL, the AMQP URL's user (the
    password, like the built-in probe's, RabbitMQ's default: a url carries none), and
    the vhost as the path."""
    amqp = urlsplit(amqp_url)
    api = urlsplit(management_url.rstrip("/"))
    user = quote(unquote(amqp.username or "guest"), safe="")
    vhost = amqp.path[1:] if len(amqp.path) > 1 else quote("/", safe="")
    return f"{api.scheme}://{user}:guest@{api.netloc}{api.path}/{vhost}"


RQ_CAVEAT = (
    "spec.trigger.queue.rq: KEDA's redis scaler counts only the waiting jobs of each "
    "queue's list: jobs in flight do not keep workers up (scale-in may stop a busy one), "
    "scheduled jobs (enqueue_in, enqueue_at) never wake workers from zero, the cooldown "
    "counts from the last non-empty poll, and several queues scale by the longest, not "
    "the sum (the built-in engine does all of these)"
)

CELERY_CAVEAT = (
    "spec.trigger.queue.celery: KEDA's redis scaler counts only the waiting messages of "
    "the queue's list: messages the workers hold unacknowledged (running with acks_late, "
    "prefetched, or ETA/countdown tasks) do not keep workers up, and the cooldown counts "
    "from the last non-empty poll (the built-in engine counts both and waits for the "
    "last delivery or acknowledgement)"
)


def readiness_caveat(bgj: BackgroundJob) -> tuple[str, str] | None:
    """What KEDA mode cannot honour of the spec, said plainly: (the ScalingLimited
    condition's reason, its message); None when nothing."""
    queue = bgj.spec.trigger.queue
    if queue is not None and queue.rq is not None:
        return "KEDAWaitingJobsOnly", RQ_CAVEAT
    if queue is not None and queue.celery is not None:
        return "KEDAWaitingJobsOnly", CELERY_CAVEAT
    rabbitmq = queue.rabbitmq if queue is not None else None
    if rabbitmq is None or rabbitmq.management_url is None or rabbitmq.url_from is None:
        return None
    return (
        "KEDAReadyMessagesOnly",
        "spec.trigger.queue.rabbitmq.managementUrl: KEDA reads the management API only "
        "with credentials in its URL, and urlFrom keeps them in a Secret as an AMQP URL, "
        "so KEDA counts ready messages only: messages in the workers' hands do not keep "
        "them scaled up (the built-in engine counts both)",
    )


def trigger_authentication(bgj: BackgroundJob) -> Manifest | None:
    """The TriggerAuthentication pointing KEDA at the user's Secret, when there is one."""
    queue = _queue(bgj)
    if queue.rabbitmq is None or queue.rabbitmq.url_from is None:
        return None
    ref = queue.rabbitmq.url_from.secret_key_ref
    return with_spec_hash(
        {
            "apiVersion": KEDA_API_VERSION,
            "kind": "TriggerAuthentication",
            "metadata": metadata(bgj),
            "spec": {
                "secretTargetRef": [{"parameter": "host", "name": ref.name, "key": ref.key}],
            },
        }
    )


def scaled_object(bgj: BackgroundJob, workload: Manifest) -> Manifest:
    """The ScaledObject that scales ``workload`` with the backlog, within the spec's bounds.

    ``suspend`` pauses KEDA at zero replicas rather than deleting the ScaledObject.
    """
    queue = _queue(bgj)
    least, most = replica_bounds(bgj.spec)
    meta = metadata(bgj)
    if bgj.spec.suspend:
        meta["annotations"] = {PAUSED_REPLICAS_ANNOTATION: "0"}
    return with_spec_hash(
        {
            "apiVersion": KEDA_API_VERSION,
            "kind": "ScaledObject",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": workload["apiVersion"],
                    "kind": workload["kind"],
                    "name": workload["metadata"]["name"],
                },
                "pollingInterval": queue.polling_interval_seconds,
                # cooldownPeriod only governs the step to zero in KEDA; the built-in
                # engine waits cooldownSeconds before every step down, and so does the
                # HPA with this stabilization window.
                "cooldownPeriod": queue.cooldown_seconds,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleDown": {
                                "stabilizationWindowSeconds": min(
                                    queue.cooldown_seconds, MAX_STABILIZATION_SECONDS
                                )
                            }
                        }
                    }
                },
                "minReplicaCount": least,
                "maxReplicaCount": most,
                "triggers": _triggers(bgj),
            },
        }
    )


def keda_children(bgj: BackgroundJob, workload: Manifest) -> list[Manifest]:
    """The KEDA objects of a queue BackgroundJob: the ScaledObject, and its
    TriggerAuthentication when credentials come from a Secret.

    Raises KedaUnsupported when KEDA cannot express the trigger.
    """
    authentication = trigger_authentication(bgj)
    out = [scaled_object(bgj, workload)]
    return [authentication, *out] if authentication is not None else out


def without_replicas(workload: Manifest) -> Manifest:
    """The worker as applied in KEDA mode: no ``spec.replicas``, so our field manager
    never owns (and never fights KEDA's HPA over) the replica count."""
    out = copy.deepcopy(workload)
    out["spec"].pop("replicas", None)
    return with_spec_hash(out)
