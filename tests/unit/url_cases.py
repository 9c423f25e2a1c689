"""One table of queue URLs and their verdicts, run through Python (unit) and the API
server's CEL rules (e2e): both must agree with it, case by case."""

from __future__ import annotations

from typing import Any

# (backend, url, accepted)
BROKER_URLS: list[tuple[str, str, bool]] = [
    ("redis", "redis://redis:6379/0", True),
    ("redis", "redis://redis", True),
    ("redis", "redis://redis:6379", True),
    ("redis", "redis://redis:6379/", True),
    ("redis", "rediss://redis.prod.svc.cluster.local:6380/3", True),
    ("redis", "redis://127.0.0.1:6379/0", True),
    ("redis", "redis://[::1]:6379/0", True),
    ("redis", "redis://worker@redis:6379/0", True),
    ("redis", "redis://redis:6379/0?socket_timeout=600", False),
    ("redis", "redis://redis:6379/0?socket_connect_timeout=600", False),
    ("redis", "redis://redis:6379/0?password=s3cret", False),
    ("redis", "redis://redis:6379/0?pass%77ord=s3cret", False),
    ("redis", "redis://redis:6379/0?%70assword=s3cret", False),
    ("redis", "redis://redis:6379/0?db=1&socket_timeout=1", False),
    ("redis", "redis://redis:6379/0?", False),
    ("redis", "redis://redis:6379/0#frag", False),
    ("redis", "redis://:s3cret@redis:6379/0", False),
    ("redis", "redis://user:s3cret@redis:6379/0", False),
    ("redis", "unix:///var/run/redis.sock", False),
    ("redis", "unix://redis/var/run/redis.sock", False),
    ("redis", "file:///etc/passwd", False),
    ("redis", "javascript://redis/alert(1)", False),
    ("redis", "http://redis:6379/0", False),
    ("redis", "amqp://rabbit:5672/%2F", False),
    ("redis", "REDIS://redis:6379/0", False),
    ("redis", "redis://redis:0/0", False),
    ("redis", "redis://redis:65536/0", False),
    ("redis", "redis://redis:999999/0", False),
    ("redis", "redis://redis:port/0", False),
    ("redis", "redis://redis:6379/zero", False),
    ("redis", "redis://redis:6379/0/1", False),
    ("redis", "redis://", False),
    ("redis", "redis://-bad-.example:6379", False),
    ("redis", "redis://red is:6379/0", False),
    ("redis", "redis://redis:6379/%zz", False),
    ("redis", "redis://redis\\evil:6379/0", False),
    ("redis", "redis:redis:6379", False),
    ("redis", "//redis:6379/0", False),
    ("redis", "redis://[zz::1]:6379/0", False),
    ("rabbitmq", "amqp://rabbit:5672/%2F", True),
    ("rabbitmq", "amqp://rabbit", True),
    ("rabbitmq", "amqps://rabbit.example.com:5671/orders", True),
    ("rabbitmq", "amqp://worker@rabbit:5672/", True),
    ("rabbitmq", "amqp://rabbit:5672/%2F?stack_timeout=600", False),
    ("rabbitmq", "amqp://rabbit:5672/%2F?heartbeat=0", False),
    ("rabbitmq", "amqp://rabbit:5672/%2F?ssl_options=%7B%7D", False),
    ("rabbitmq", "amqp://rabbit:5672/a/b", False),
    ("rabbitmq", "amqp://guest:guest@rabbit:5672/%2F", False),
    ("rabbitmq", "redis://rabbit:5672/%2F", False),
    ("rabbitmq", "amqp://rabbit:5672/%2F#x", False),
]

# (managementUrl, allowInsecureManagement, accepted)
MANAGEMENT_URLS: list[tuple[str, bool, bool]] = [
    ("https://rabbit:15671", False, True),
    ("https://rabbit:15671/", False, True),
    ("https://rabbit.example.com/rabbitmq", False, True),
    ("http://rabbit:15672", True, True),
    ("http://rabbit:15672", False, False),
    ("https://admin:s3cret@rabbit:15671", False, False),
    ("https://rabbit:15671/?redirect=x", False, False),
    ("https://rabbit:15671/#x", False, False),
    ("ftp://rabbit:15671", False, False),
    ("file:///etc/passwd", True, False),
    ("javascript://rabbit/alert(1)", True, False),
    ("https://rabbit:99999", False, False),
    ("https://", False, False),
]


def broker_spec(backend: str, url: str) -> dict[str, Any]:
    """A queue BackgroundJob spec reading ``url``."""
    if backend == "redis":
        queue: dict[str, Any] = {"redis": {"url": url, "list": "jobs"}}
    else:
        queue = {"rabbitmq": {"url": url, "queue": "jobs"}}
    return {"image": "worker:1", "trigger": {"queue": queue}}


def management_spec(management_url: str, insecure: bool) -> dict[str, Any]:
    """A RabbitMQ BackgroundJob spec with this management API."""
    rabbitmq: dict[str, Any] = {
        "url": "amqp://rabbit:5672/%2F",
        "queue": "jobs",
        "managementUrl": management_url,
    }
    if insecure:
        rabbitmq["allowInsecureManagement"] = True
    return {"image": "worker:1", "trigger": {"queue": {"rabbitmq": rabbitmq}}}
