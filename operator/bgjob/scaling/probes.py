"""Backlog probes: how many messages wait in a Redis list or a RabbitMQ queue.

Each probe keeps one connection per broker URL and reuses it across polls; a
failed call drops the connection so the next poll reconnects. URLs may carry
credentials: they are never logged (``redact``) nor put into status or Events.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import redis

TIMEOUT_SECONDS = 2.0


class ProbeError(Exception):
    """The backlog could not be read; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class QueueRef:
    """One queue on one broker: what a probe reads. Equal refs share one probe call."""

    backend: str  # "redis" or "rabbitmq"
    url: str
    name: str
    management_url: str | None = None  # RabbitMQ: count unacknowledged messages too

    def __str__(self) -> str:
        return f"{self.backend} {redact(self.url)} {self.name}"


def redact(url: str) -> str:
    """The URL without its password, in the userinfo or in the query (?password=)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if parts.query:
        parts = parts._replace(query="***")
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if port:
            netloc += f":{port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


class Probe(Protocol):
    """Reads the backlog of one kind of broker."""

    def backlog(self, queue: QueueRef) -> int: ...

    def close(self) -> None: ...


class RedisProbe:
    """LLEN of a Redis list."""

    def __init__(self) -> None:
        self._clients: dict[str, redis.Redis] = {}
        self._lock = threading.Lock()

    def _client(self, url: str) -> redis.Redis:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=TIMEOUT_SECONDS,
                    socket_connect_timeout=TIMEOUT_SECONDS,
                    health_check_interval=30,
                )
                self._clients[url] = client
            return client

    def backlog(self, queue: QueueRef) -> int:
        try:
            length: int = self._client(queue.url).llen(queue.name)  # type: ignore[assignment]
            return length
        except redis.RedisError as error:
            with self._lock:
                stale = self._clients.pop(queue.url, None)
            if stale is not None:
                stale.close()
            raise ProbeError(f"redis at {redact(queue.url)}: {error}") from None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                with contextlib.suppress(redis.RedisError, OSError):
                    client.close()
            self._clients.clear()


class RabbitMQProbe:
    """Ready messages of a RabbitMQ queue, by a passive queue_declare over AMQP."""

    def __init__(self) -> None:
        self._connections: dict[str, pika.BlockingConnection] = {}
        self._lock = threading.Lock()

    def _connection(self, url: str) -> pika.BlockingConnection:
        connection = self._connections.get(url)
        if connection is None or connection.is_closed:
            params = pika.URLParameters(url)
            params.socket_timeout = TIMEOUT_SECONDS
            params.blocked_connection_timeout = TIMEOUT_SECONDS
            params.connection_attempts = 1
            params.heartbeat = 30
            connection = pika.BlockingConnection(params)
            self._connections[url] = connection
        return connection

    def backlog(self, queue: QueueRef) -> int:
        if queue.management_url is not None:
            return self._management_backlog(queue)
        # One BlockingConnection must not be used by two threads at once.
        with self._lock:
            try:
                channel = self._connection(queue.url).channel()
                try:
                    declared = channel.queue_declare(queue=queue.name, passive=True)
                    return int(declared.method.message_count)
                finally:
                    if channel.is_open:
                        channel.close()
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code == 404:
                    raise ProbeError(f"rabbitmq queue {queue.name!r} does not exist") from None
                raise ProbeError(f"rabbitmq at {redact(queue.url)}: {error}") from None
            except (pika.exceptions.AMQPError, OSError) as error:
                stale = self._connections.pop(queue.url, None)
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    if stale is not None and stale.is_open:
                        stale.close()
                reason = type(error).__name__ if not str(error) else str(error)
                raise ProbeError(f"rabbitmq at {redact(queue.url)}: {reason}") from None

    def _management_backlog(self, queue: QueueRef) -> int:
        """Ready plus unacknowledged messages, from the management HTTP API."""
        assert queue.management_url is not None
        amqp = urlsplit(queue.url)
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        api = queue.management_url.rstrip("/")
        url = f"{api}/api/queues/{quote(vhost, safe='')}/{quote(queue.name, safe='')}"
        credentials = f"{unquote(amqp.username or 'guest')}:{unquote(amqp.password or 'guest')}"
        request = urllib.request.Request(url)
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise ProbeError(f"rabbitmq queue {queue.name!r} does not exist") from None
            raise ProbeError(f"rabbitmq management API at {api}: HTTP {error.code}") from None
        except (OSError, ValueError) as error:
            raise ProbeError(f"rabbitmq management API at {api}: {error}") from None
        return int(body.get("messages_ready", 0)) + int(body.get("messages_unacknowledged", 0))

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                # A broker that went away makes close() raise: closing is best effort.
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    if connection.is_open:
                        connection.close()
            self._connections.clear()
