"""Where the operator may dial on a tenant's behalf, and dialling only there.

A broker's host is resolved once, every address is checked against the denied
networks, and the socket connects to one of the checked addresses: a name that
resolves differently a moment later (DNS rebinding) cannot slip past the check.
IPv6 addresses that carry an IPv4 address (IPv4-mapped ``::ffff:169.254.169.254``,
IPv4-compatible ``::169.254.169.254``, NAT64 ``64:ff9b::a9fe:a9fe``, 6to4, Teredo,
ISATAP) are checked as that IPv4 address too. Unspecified addresses (``0.0.0.0/8``,
``::``), which a dial takes to this host, are denied whatever the policy says.

A lookup runs on a bounded resolver pool and its caller waits no longer than its
own deadline (``getaddrinfo`` itself cannot be interrupted): lookups of one name
share one call, and answers are kept for a few seconds. A caller that wants to know
which lookups outlived it (to count the thread they still hold) collects them with
``lookups_started``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local (cloud metadata credentials: 169.254.169.254, AWS fd00:ec2::254), and the
# metadata services elsewhere: GCP fd20:ce::254, Oracle fd00:c1::a9fe:a9fe, Alibaba
# 100.100.100.200.
DEFAULT_DENIED = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "fd20:ce::254/128",
    "fd00:c1::a9fe:a9fe/128",
    "100.100.100.200/32",
)
# A dial to an unspecified address reaches this host: never allowed.
ALWAYS_DENIED = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


RESOLVER_THREADS = 32
LOOKUP_CACHE_SECONDS = 5.0
LOOKUP_CACHE_SIZE = 1024

AddrInfo = list[tuple[Any, ...]]


class Denied(OSError):
    """The host resolves to an address in a denied network."""


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """Networks from "CIDR,CIDR" (or a list); a bare address is a /32 or /128."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4,
    Teredo server and client, ISATAP): a dial to it may reach them."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    # ::/96 beyond ::0.255.255.255 (so :: and ::1 are themselves), and NAT64.
    compatible = address in _IPV4_COMPATIBLE and int(address) >= 1 << 24
    if compatible or any(address in prefix for prefix in _NAT64):
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if (int(address) >> 32) & 0xFDFFFFFF == 0x00005EFE:  # ISATAP interface identifier
        found.append(low32)
    return found


@dataclass(frozen=True)
class NetworkPolicy:
    """Networks the operator never dials for a tenant."""

    denied: tuple[Network, ...] = parse_networks(DEFAULT_DENIED)

    def allows(self, address: Address) -> bool:
        candidates = [address, *embedded_ipv4(address)]
        return not any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in (*self.denied, *ALWAYS_DENIED)
        )

    def resolve(self, host: str, port: int, timeout: float) -> list[tuple[int, tuple[str, int]]]:
        """(family, sockaddr) of every address of ``host``, looked up within ``timeout``
        seconds; Denied if any is denied."""
        infos = _lookups.get(host, port, timeout)
        found: list[tuple[int, tuple[str, int]]] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if not self.allows(address):
                raise Denied(f"{host} resolves into a denied network")
            found.append((family, (str(sockaddr[0]), int(sockaddr[1]))))
        if not found:
            raise OSError(f"{host} has no address")
        return found

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP socket to a checked address of ``host``, within ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        error: OSError | None = None
        for family, sockaddr in self.resolve(host, port, timeout):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(left)
                sock.connect(sockaddr)
                return sock
            except OSError as failed:
                sock.close()
                error = failed
        raise error or TimeoutError(f"no connection to {host} within {timeout}s")

    def literal_problem(self, host: str) -> str | None:
        """Why a host written as an address must not be handed to a client that dials by
        itself (KEDA), checked without DNS; None for a name or an allowed address."""
        text = host.strip("[]").split("%", 1)[0]
        try:
            address: Address = ipaddress.ip_address(text)
        except ValueError:
            try:
                address = ipaddress.IPv4Address(socket.inet_aton(text))
            except OSError:
                return None  # a name
            if str(address) != text:
                return f"host {host} is a number resolvers read differently (as {address})"
        if not self.allows(address):
            return f"host {host} is in a network the operator denies (--deny-networks)"
        return None

    def checked_address(self, host: str, port: int, timeout: float) -> str:
        """One checked address of ``host`` (looked up within ``timeout`` seconds), for
        clients that dial by themselves."""
        return self.resolve(host, port, timeout)[0][1][0]


_local = threading.local()


@contextlib.contextmanager
def lookups_started() -> Iterator[list[Future[AddrInfo]]]:
    """The lookups this thread waits for inside the block, to learn which outlive it."""
    before = getattr(_local, "pending", None)
    pending: list[Future[AddrInfo]] = []
    _local.pending = pending
    try:
        yield pending
    finally:
        _local.pending = before


def after_lookups(pending: list[Future[AddrInfo]], then: Callable[[], None]) -> None:
    """Call ``then`` once every lookup in ``pending`` has finished (now, if all have)."""
    left = [len(pending) + 1]
    lock = threading.Lock()

    def one_done(_: object = None) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            then()

    for future in pending:
        future.add_done_callback(one_done)
    one_done()


class _Lookups:
    """getaddrinfo on a bounded pool: one call per name in flight, answers kept briefly."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="resolve")
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], Future[AddrInfo]] = {}
        self._answers: dict[tuple[str, int], tuple[float, AddrInfo | str]] = {}

    def get(self, host: str, port: int, timeout: float) -> AddrInfo:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:  # an address: nothing to look up
            return socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        key = (host.lower(), port)
        with self._lock:
            cached = self._answers.get(key)
            if cached is not None and time.monotonic() - cached[0] < LOOKUP_CACHE_SECONDS:
                future = None
            else:
                cached, future = None, self._running.get(key)
                if future is None:
                    future = self._pool.submit(self._lookup, key)
                    self._running[key] = future
        if cached is not None:
            if isinstance(cached[1], str):
                raise OSError(cached[1])
            return cached[1]
        assert future is not None
        pending = getattr(_local, "pending", None)
        if pending is not None and future not in pending:
            pending.append(future)
        try:
            return future.result(timeout=max(0.0, timeout))
        except TimeoutError:
            raise TimeoutError(f"no address for {host} within {timeout:.1f}s") from None

    def _lookup(self, key: tuple[str, int]) -> AddrInfo:
        answer: AddrInfo | str
        try:
            answer = socket.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        except OSError as error:
            answer = f"{key[0]}: {error}"
        with self._lock:
            self._running.pop(key, None)
            if len(self._answers) >= LOOKUP_CACHE_SIZE:
                self._answers.clear()
            self._answers[key] = (time.monotonic(), answer)
        if isinstance(answer, str):
            raise OSError(answer)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()


_lookups = _Lookups()


def forget_lookups() -> None:
    """Drop cached answers (tests, and a changed resolver)."""
    _lookups.forget()


_default = NetworkPolicy()


def set_default_policy(policy: NetworkPolicy) -> None:
    """The policy of this process (``run --deny-networks``); set before the scaler starts."""
    global _default
    _default = policy


def default_policy() -> NetworkPolicy:
    """The policy of this process: DEFAULT_DENIED unless ``run --deny-networks`` said otherwise."""
    return _default
