"""Where the operator may dial on a tenant's behalf, and dialling only there.

A broker's host is resolved once, every address is checked against the denied
networks, and the socket connects to one of the checked addresses: a name that
resolves differently a moment later (DNS rebinding) cannot slip past the check.
IPv4-mapped IPv6 addresses (``::ffff:169.254.169.254``) are checked as the IPv4
address they carry.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local (cloud metadata credentials: 169.254.169.254, fd00:ec2::254).
DEFAULT_DENIED = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")


class Denied(OSError):
    """The host resolves to an address in a denied network."""


def parse_networks(text: str | Iterable[str]) -> tuple[Network, ...]:
    """Networks from "CIDR,CIDR" (or a list); a bare address is a /32 or /128."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


@dataclass(frozen=True)
class NetworkPolicy:
    """Networks the operator never dials for a tenant."""

    denied: tuple[Network, ...] = parse_networks(DEFAULT_DENIED)

    def allows(self, address: Address) -> bool:
        candidates: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                candidates.append(address.ipv4_mapped)
            if address.sixtofour is not None:
                candidates.append(address.sixtofour)
        return not any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.denied
        )

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
        """(family, sockaddr) of every address of ``host``; Denied if any is denied."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
        for family, sockaddr in self.resolve(host, port):
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

    def checked_address(self, host: str, port: int) -> str:
        """One checked address of ``host``, for clients that dial by themselves."""
        return self.resolve(host, port)[0][1][0]


_default = NetworkPolicy()


def set_default_policy(policy: NetworkPolicy) -> None:
    """The policy of this process (``run --deny-networks``); set before the scaler starts."""
    global _default
    _default = policy


def default_policy() -> NetworkPolicy:
    """The policy of this process: DEFAULT_DENIED unless ``run --deny-networks`` said otherwise."""
    return _default
