"""The queue URL policy: the same verdict for a spec's url (admission, render) and for a
URL read from a Secret (resolve time), and the networks the operator never dials."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bgjob.api import urls
from bgjob.api.models import InvalidSpec, parse
from bgjob.scaling import network
from bgjob.scaling.network import Denied, NetworkPolicy, parse_networks
from bgjob.scaling.probes import ProbeError, QueueRef, RabbitMQProbe, RedisProbe
from tests.unit.url_cases import BROKER_URLS, MANAGEMENT_URLS, broker_spec, management_spec


def _verdict(spec: dict[str, Any]) -> str | None:
    try:
        parse({"metadata": {"name": "x"}, "spec": spec})
    except InvalidSpec as error:
        return str(error)
    return None


def test_the_table_is_big_enough() -> None:
    assert len(BROKER_URLS) + len(MANAGEMENT_URLS) >= 30
    assert sum("%" in url and "?" in url for _, url, _ in BROKER_URLS) >= 2


@pytest.mark.parametrize(("backend", "url", "accepted"), BROKER_URLS)
def test_broker_urls_in_a_spec(backend: str, url: str, accepted: bool) -> None:
    error = _verdict(broker_spec(backend, url))
    if accepted:
        assert error is None
    else:
        assert error is not None and f"spec.trigger.queue.{backend}.url:" in error
        assert "s3cret" not in error.split("(got")[0]


@pytest.mark.parametrize(("backend", "url", "accepted"), BROKER_URLS)
def test_broker_urls_in_a_secret_get_the_same_verdict_but_may_carry_a_password(
    backend: str, url: str, accepted: bool
) -> None:
    problem = urls.broker_problem(url, backend)
    parts = urls.split(url)
    only_a_password = (
        not accepted
        and parts is not None
        and parts.password is not None
        and urls.broker_problem(url.replace(f":{parts.userinfo.split(':', 1)[1]}@", "@"), backend)  # type: ignore[union-attr]
        is None
    )
    assert (problem is None) == (accepted or only_a_password), problem
    if problem is not None:
        assert "s3cret" not in problem


def test_query_options_are_named_decoded_and_values_never_shown() -> None:
    problem = urls.broker_problem("redis://h:1/0?pass%77ord=s3cret&socket_timeout=9", "redis")
    assert problem == "must not carry query options (password, socket_timeout)"


def test_the_client_is_built_from_parts_not_from_query_options() -> None:
    parts = urls.split("redis://app:p%40ss@redis.example:6380/2")
    assert parts is not None
    assert (parts.username, parts.password, parts.hostname, parts.port_number()) == (
        "app",
        "p@ss",
        "redis.example",
        6380,
    )
    assert urls.split("amqp://[::1]/%2F") == urls.Parts("amqp", None, "::1", "", "/%2F", None)


@pytest.mark.parametrize(("management_url", "insecure", "accepted"), MANAGEMENT_URLS)
def test_management_urls(management_url: str, insecure: bool, accepted: bool) -> None:
    error = _verdict(management_spec(management_url, insecure))
    if accepted:
        assert error is None
    else:
        assert error is not None and "spec.trigger.queue.rabbitmq.managementUrl:" in error


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),  # loopback: local development and the test bed
        ("::1", True),
        ("10.0.0.5", True),
        ("169.254.169.254", False),  # cloud metadata
        ("169.254.0.1", False),
        ("fd00:ec2::254", False),
        ("fd00:ec2::253", True),
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),  # IPv4-mapped
        ("::ffff:127.0.0.1", True),
        ("2002:a9fe:a9fe::1", False),  # 6to4 around 169.254.169.254
        ("64:ff9b::a9fe:a9fe", False),  # NAT64, well-known prefix
        ("64:ff9b:1::a9fe:a9fe", False),  # NAT64, local-use prefix
        ("64:ff9b::a00:5", True),  # NAT64 around 10.0.0.5
        ("::169.254.169.254", False),  # IPv4-compatible (deprecated)
        ("2001:0:4136:e378:8000:63bf:5601:5601", False),  # Teredo, client 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),  # Teredo, client 192.0.2.45
        ("fe80::5efe:a9fe:a9fe", False),
        ("2001:db8::5efe:a9fe:a9fe", False),  # ISATAP around 169.254.169.254
        ("fd20:ce::254", False),  # GCP metadata over IPv6
        ("100.100.100.200", False),  # Alibaba Cloud metadata
        ("100.100.100.201", True),
        ("fd00:c1::a9fe:a9fe", False),  # Oracle Cloud metadata over IPv6
        ("0.0.0.0", False),  # unspecified: the dial reaches this host
        ("0.1.2.3", False),
        ("::", False),
    ],
)
def test_the_default_network_policy(address: str, allowed: bool) -> None:
    assert NetworkPolicy().allows(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "0", "::", "::127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "localhost"],
)
def test_denied_loopback_has_no_way_around(host: str) -> None:
    policy = NetworkPolicy(parse_networks("127.0.0.0/8,::1/128"))
    with pytest.raises(Denied):
        policy.resolve(host, 80, 1.0)


def test_unspecified_addresses_are_denied_even_by_an_empty_policy() -> None:
    assert not NetworkPolicy(()).allows(ipaddress.ip_address("0.0.0.0"))
    assert not NetworkPolicy(()).allows(ipaddress.ip_address("::"))
    assert NetworkPolicy(()).allows(ipaddress.ip_address("169.254.169.254"))


def test_every_resolved_address_is_checked_and_the_dial_uses_a_checked_one() -> None:
    policy = NetworkPolicy(parse_networks("127.0.0.0/8"))
    with pytest.raises(Denied):
        policy.connect("localhost", 9, 0.5)
    assert NetworkPolicy(()).checked_address("127.0.0.1", 9, 1.0) == "127.0.0.1"
    with pytest.raises(Denied):
        NetworkPolicy().connect("169.254.169.254", 80, 0.5)
    assert parse_networks("") == ()
    assert [str(n) for n in parse_networks(" 10.0.0.0/8 , fd00::1 ")] == [
        "10.0.0.0/8",
        "fd00::1/128",
    ]


def test_the_run_command_takes_the_denied_networks() -> None:
    from bgjob.cli import parser

    default = parser().parse_args(["run"]).deny_networks
    assert [str(n) for n in default] == [
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "fd20:ce::254/128",
        "fd00:c1::a9fe:a9fe/128",
        "100.100.100.200/32",
    ]
    chosen = parser().parse_args(["run", "--deny-networks", "10.0.0.0/8,169.254.0.0/16"])
    assert [str(n) for n in chosen.deny_networks] == ["10.0.0.0/8", "169.254.0.0/16"]
    assert parser().parse_args(["run", "--deny-networks="]).deny_networks == ()
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--deny-networks", "not-a-network"])


# --- DNS within the deadline -------------------------------------------------------------


@pytest.fixture
def slow_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Names under slow.example answer (as 127.0.0.1) only when released; counts lookups."""
    real = socket.getaddrinfo
    state: dict[str, Any] = {"release": threading.Event(), "lookups": []}

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith("slow.example"):
            state["lookups"].append(host)
            state["release"].wait(5)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    network.forget_lookups()
    yield state
    state["release"].set()
    network.forget_lookups()


@pytest.mark.parametrize(
    ("probe", "url"),
    [
        (RedisProbe, "redis://a.slow.example:1/0"),
        (RabbitMQProbe, "amqp://b.slow.example:1/"),
    ],
)
def test_a_slow_lookup_ends_with_the_probes_deadline(
    slow_dns: dict[str, Any], probe: Any, url: str
) -> None:
    backend = "redis" if probe is RedisProbe else "rabbitmq"
    started = time.monotonic()
    with pytest.raises(ProbeError):
        probe(NetworkPolicy()).backlog(QueueRef(backend, url, "q"), 0.5)
    assert time.monotonic() - started < 1.0


def test_lookups_are_shared_cached_briefly_and_reported_to_the_caller(
    slow_dns: dict[str, Any],
) -> None:
    policy = NetworkPolicy()
    with network.lookups_started() as pending:
        with pytest.raises(TimeoutError):
            policy.connect("c.slow.example", 9, 0.2)
        with pytest.raises(TimeoutError):
            policy.connect("c.slow.example", 9, 0.2)
    assert slow_dns["lookups"] == ["c.slow.example"], "one lookup in flight per name"
    assert pending and not pending[0].done(), "the caller learns a lookup outlived it"
    slow_dns["release"].set()
    pending[0].result(2)
    assert policy.resolve("c.slow.example", 9, 0.2)[0][1][0] == "127.0.0.1"
    assert slow_dns["lookups"] == ["c.slow.example"], "the answer is cached"
    with pytest.raises(Denied):
        NetworkPolicy(parse_networks("127.0.0.0/8")).resolve("c.slow.example", 9, 0.2)


def test_a_lookup_that_outlives_its_probe_keeps_the_namespaces_thread_counted(
    slow_dns: dict[str, Any],
) -> None:
    from bgjob.scaling.scaler import Scaler

    class Resolving:
        def backlog(self, queue: QueueRef, timeout: float) -> int:
            NetworkPolicy().connect("d.slow.example", 9, 0.2)
            return 0

        def retain(self, url: str, user: object) -> None: ...
        def release(self, url: str, user: object) -> None: ...
        def close(self) -> None: ...

    scaler = Scaler(None, lambda _: None, policy=NetworkPolicy())  # type: ignore[arg-type]
    scaler.probes = {"redis": Resolving(), "rabbitmq": Resolving()}  # type: ignore[dict-item]
    scaler.track(
        parse(
            {
                "metadata": {"name": "j", "namespace": "ns", "uid": "j"},
                "spec": {
                    "image": "w",
                    "trigger": {"queue": {"redis": {"list": "l", "url": "redis://r/0"}}},
                },
            }
        ),
        0,
    )

    async def scenario() -> list[int]:
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(0.6)  # the probe gave up at 0.2 s; its lookup still runs
        held = [scaler._gate.busy.get("ns", 0)]
        slow_dns["release"].set()
        await asyncio.sleep(0.3)
        held.append(scaler._gate.busy.get("ns", 0))
        task.cancel()
        return held

    try:
        during, after = asyncio.run(scenario())
    finally:
        scaler.close()
    assert during >= 1, "the thread was counted free while its lookup still ran"
    assert after == 0
