"""The URL policy of queue brokers, one grammar for admission (CEL) and Python.

A broker URL names a place the operator dials on a tenant's behalf, so it is
read strictly: a fixed grammar (RFC 3986 characters, percent-escapes well
formed, no fragment), the scheme of its backend, a host that is a DNS name or an
IP literal, a numeric port, and no query at all, because every query option a
client honours changes what the client does (``socket_timeout``,
``stack_timeout``, ``password`` and their percent-encoded spellings such as
``pass%77ord``). Within this grammar Go's ``net/url`` (behind CEL's ``url()``)
and this module split a URL the same way, so the API server and
``bgjob-operator render`` give the same verdict; URLs read from Secrets pass
the same checks when they are resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

SCHEMES: dict[str, tuple[str, ...]] = {
    "redis": ("redis", "rediss"),
    "rabbitmq": ("amqp", "amqps"),
    "management": ("http", "https"),
}
DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "http": 80,
    "https": 443,
}

_PCT = "%[0-9A-Fa-f]{2}"
_CHARS = "-A-Za-z0-9._~!$&'()*+,;="  # unreserved and sub-delims
_USERINFO = f"(?:{_PCT}|[{_CHARS}:])*"
_HOST = r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
_PATH = f"(?:{_PCT}|[{_CHARS}:@/])*"
_QUERY = f"(?:{_PCT}|[{_CHARS}:@/?])*"

# Every character and escape of a broker URL; a query is allowed by the grammar
# only so that its rule can say what is wrong.
BROKER_SHAPE = (
    rf"^[a-z][a-z0-9+.-]*://(?:{_USERINFO}@)?{_HOST}(?::[0-9]*)?(?:/{_PATH})?(?:\?{_QUERY})?$"
)
# The management API: no credentials, no query, no fragment.
MANAGEMENT_SHAPE = rf"^https?://{_HOST}(?::[0-9]*)?(?:/{_PATH})?$"
# The rules below read the whole URL (the API server bounds the cost of a regex on a
# field with a maxLength, not on what url() returns), within the grammar above.
_SCHEME = r"^[a-z][a-z0-9+.-]*://"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A host is a DNS name (or IPv4 address) of well-formed labels, or an IPv6 literal.
HOST_RULE = (
    _SCHEME + rf"(?:[^@/?#]*@)?(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\])"
    r"(?::[0-9]*)?(?:[/?].*)?$"
)
_PORT_NUMBER = (
    r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
PORT_RULE = _SCHEME + rf"(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#\[]*)(?::{_PORT_NUMBER}?)?(?:[/?].*)?$"
# The path each backend gives a meaning to: a Redis database number, an AMQP vhost.
PATH_RULES = {
    "redis": _SCHEME + r"[^/?#]*(?:/[0-9]{0,5})?(?:\?.*)?$",
    "rabbitmq": _SCHEME + r"[^/?#]*(?:/[^/?#]*)?(?:\?.*)?$",
}

_SPLIT = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?:(?P<userinfo>[^@/?]*)@)?"
    r"(?P<host>\[[^\]/?]*\]|[^:/?\[]*)(?::(?P<port>[0-9]*))?(?P<path>/[^?]*)?(?:\?(?P<query>.*))?$"
)


@dataclass(frozen=True)
class Parts:
    """A URL split as Go's net/url splits it (what CEL's url() returns)."""

    scheme: str
    userinfo: str | None
    hostname: str  # without brackets, like getHostname()
    port: str  # "" when absent, like getPort()
    path: str  # escaped, like getEscapedPath()
    query: str | None

    @property
    def username(self) -> str | None:
        if self.userinfo is None:
            return None
        return unquote(self.userinfo.partition(":")[0])

    @property
    def password(self) -> str | None:
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return unquote(self.userinfo.partition(":")[2])

    def port_number(self) -> int:
        return int(self.port) if self.port else DEFAULT_PORTS.get(self.scheme, 0)


def split(url: str, shape: str = BROKER_SHAPE) -> Parts | None:
    """The URL's parts, or None when it is outside the grammar."""
    if re.fullmatch(shape, url) is None:
        return None
    found = _SPLIT.fullmatch(url)
    if found is None:  # pragma: no cover - the grammar implies the split
        return None
    host = found["host"]
    if host.startswith("["):
        host = host[1:-1]
    return Parts(
        scheme=found["scheme"],
        userinfo=found["userinfo"],
        hostname=host,
        port=found["port"] or "",
        path=found["path"] or "",
        query=found["query"],
    )


def host_ok(url: str) -> bool:
    return re.fullmatch(HOST_RULE, url) is not None


def port_ok(url: str) -> bool:
    return re.fullmatch(PORT_RULE, url) is not None


def path_ok(url: str, backend: str) -> bool:
    return re.fullmatch(PATH_RULES[backend], url) is not None


def broker_problem(url: str, backend: str) -> str | None:
    """Why a broker URL (from a spec or a Secret) is refused, naming the part, never
    the value; None when it is fine. The same checks as the CRD's rules."""
    parts = split(url)
    if parts is None:
        return "is not a URL the operator accepts (RFC 3986 characters, no fragment)"
    if parts.scheme not in SCHEMES[backend]:
        return f"scheme must be {' or '.join(SCHEMES[backend])}"
    if not host_ok(url):
        return "must name a host: a DNS name or an IP address"
    if not port_ok(url):
        return "port must be a number from 1 to 65535"
    if parts.query is not None:
        return f"must not carry query options ({option_names(parts.query)})"
    if not path_ok(url, backend):
        return "path must be a database number" if backend == "redis" else "path must be a vhost"
    return None


def option_names(query: str) -> str:
    """The query's option names, decoded, for a message: names are not secrets, values may be."""
    names = []
    for item in query.split("&"):
        name = unquote(item.partition("=")[0])
        names.append(name if re.fullmatch(r"^[A-Za-z0-9_.-]{1,40}$", name) else "?")
    return ", ".join(sorted(set(names))) or "empty query"


# --- CEL forms of the same checks ----------------------------------------------------


def cel_shape(field: str, shape: str = BROKER_SHAPE) -> str:
    """CEL: the field is in the grammar (and Go agrees it is a URL)."""
    return f'self.{field}.matches(r"{shape}") && isURL(self.{field})'


def cel_guarded(field: str, check: str, shape: str = BROKER_SHAPE) -> str:
    """CEL: ``check`` (``U.`` stands for the parsed URL) holds when the field is set and
    well formed; the shape rule reports the rest."""
    check = check.replace("U.", f"url(self.{field}).")
    return f"!has(self.{field}) || !({cel_shape(field, shape)}) || ({check})"


def cel_matches(field: str, pattern: str, shape: str = BROKER_SHAPE) -> str:
    """CEL: the well-formed field matches ``pattern`` too."""
    return (
        f'!has(self.{field}) || !({cel_shape(field, shape)}) || self.{field}.matches(r"{pattern}")'
    )
