"""Which tasks in hand the celery probe counts for a queue, against a real redis-server:
kombu's own routing (real kombu producers and consumers where the layout is kombu's),
and what a tenant's database can hold that kombu never writes. A pool may count
another's task (and says so in its note), never miss its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Queue

from bgjob.scaling.network import NetworkPolicy
from bgjob.scaling.probes import CeleryProbe, QueueRef, Work
from tests.e2e.brokers import RedisServer

SEP = "\x06\x16"


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, password=redis_server.password)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _probe(url: str, queue: str) -> Work:
    probe = CeleryProbe(NetworkPolicy())
    ref = QueueRef("celery", url, queue)
    probe.retain(ref.url, "t")
    try:
        work = probe.backlog(ref, 5.0)
    finally:
        probe.close()
    assert isinstance(work, Work)
    return work


def _in_hand(
    broker: redis.Redis, exchange: str, routing_key: str, body: str = "e30=", when: float = 0.0
) -> str:
    """One message delivered and not acknowledged, written as kombu's QoS.append does."""
    tag = str(uuid.uuid4())
    message = {"body": body, "properties": {"delivery_tag": tag}, "headers": {}}
    broker.zadd("unacked_index", {tag: when or time.time()})
    broker.hset("unacked", tag, json.dumps([message, exchange, routing_key]))
    return tag


def _bind(broker: redis.Redis, exchange: str, routing_key: str, queue: str) -> None:
    """A direct binding, as kombu's _queue_bind stores it."""
    broker.sadd(f"_kombu.binding.{exchange}", SEP.join([routing_key, "", queue]))


def test_tasks_in_hand_count_for_the_queue_their_exchange_and_routing_key_lead_to(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    media = Exchange("media", type="direct")
    events = Exchange("q", type="topic")  # an exchange named after another pool's queue
    with Connection(redis_server.url) as connection:
        channel = connection.channel()
        queues = {
            "video": Queue("video", media, routing_key="media.video")(channel),
            "audio": Queue("audio", media, routing_key="media.audio")(channel),
            "orders": Queue("orders", events, routing_key="orders.#")(channel),
            "q": Queue("q", Exchange("q-default", type="direct"), routing_key="q")(channel),
        }
        for queue in queues.values():
            queue.declare()
        producer = connection.Producer(channel)
        for exchange, key, count in [
            (media, "media.video", 7),
            (media, "media.audio", 2),
            (events, "orders.new", 3),
        ]:
            for i in range(count):
                producer.publish({"n": i}, exchange=exchange, routing_key=key)
        held = []
        for name, count in [("video", 7), ("audio", 2), ("orders", 3)]:
            for _ in range(count):
                message = queues[name].get(no_ack=False)
                assert message is not None
                held.append(message)
        assert broker.hlen("unacked") == 12

        video, audio = _probe(redis_server.url, "video"), _probe(redis_server.url, "audio")
        assert (video.backlog, video.note) == (7, None)
        assert (audio.backlog, audio.note) == (2, None)
        # The topic exchange "q" routes to orders, never to the queue named q.
        q = _probe(redis_server.url, "q")
        assert (q.backlog, q.note) == (0, None)
        # A topic pattern is not matched here: orders counts its own, and says it
        # could not tell them apart.
        orders = _probe(redis_server.url, "orders")
        assert orders.backlog == 3 and orders.note is not None and orders.note.startswith("3 ")

        for message in held:
            message.ack()
        assert _probe(redis_server.url, "video").backlog == 0


def test_acknowledged_tags_left_in_the_index_never_hide_older_tasks_in_hand(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    _bind(broker, "q", "q", "q")
    for i in range(200):
        _in_hand(broker, "q", "q", when=100 + i)
    # Newer index entries whose hash field is gone (kombu's _restore deletes the field
    # and leaves the index entry to its next restore pass).
    broker.zadd("unacked_index", {f"gone-{i}": 10_000 + i for i in range(128)})
    work = _probe(redis_server.url, "q")
    assert work.backlog >= 200
    assert work.note is not None


def test_stray_fields_and_big_messages_of_another_queue_do_not_count(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    _bind(broker, "other", "other", "other")
    _bind(broker, "q", "q", "q")
    for i in range(127):  # 1.5 MiB in all, 12 to 16 KiB each
        _in_hand(broker, "other", "other", body="x" * (12_000 + 32 * i), when=100 + i)
    broker.hset("unacked", "stray", "junk")  # no index entry: kombu never restores it
    work = _probe(redis_server.url, "q")
    assert (work.backlog, work.note) == (0, None)
    other = _probe(redis_server.url, "other")
    assert (other.backlog, other.note) == (127, None)
    _in_hand(broker, "q", "q", body="y" * 300_000)  # bigger than the call's read budget
    work = _probe(redis_server.url, "q")
    assert (work.backlog, work.note) == (1, None)


def test_entries_kombu_never_writes_count_as_unknown_without_failing_the_probe(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    _bind(broker, "q", "q", "q")
    for i in range(5):
        _in_hand(broker, "q", "q", when=100 + i)
    broker.zadd("unacked_index", {"nested": 200})
    broker.hset("unacked", "nested", "[" * 16_000)
    work = _probe(redis_server.url, "q")
    assert work.backlog == 6
    assert work.note is not None and work.note.startswith("1 ")


def test_long_delivery_tags_are_not_read_and_count_as_unknown(
    redis_server: RedisServer, broker: redis.Redis
) -> None:
    _bind(broker, "q", "q", "q")
    for i in range(128):
        tag = f"{i:04d}" + "t" * 3000
        broker.zadd("unacked_index", {tag: 100 + i})
        broker.hset("unacked", tag, json.dumps([{}, "q", "q"]))
    work = _probe(redis_server.url, "q")
    assert work.backlog == 128
    assert work.note is not None and work.note.startswith("128 ")
