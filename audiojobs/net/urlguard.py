"""The SSRF guard: which URLs the worker may fetch, and which addresses it may connect to.

Two layers use the same rules. At submit the API checks the URL itself (scheme, host, port,
literal addresses in any spelling); that refuses the obviously bad with a 422. In the worker every
connection yt-dlp opens goes through :mod:`audiojobs.net.egress`, which resolves the host,
checks every address, and connects to an address it checked: redirects and DNS answers are judged
when they happen, with no window for DNS rebinding.

Rules, in order:

1. only ``http`` and ``https``; no credentials in the URL;
2. ``AUDIO_URL_DENY_HOSTS`` (``host`` or ``host:port``) is refused outright;
3. ``AUDIO_URL_ALLOW_HOSTS`` (``host`` or ``host:port``) lifts the address rule for that host only,
   and a ``host:port`` entry also allows that port;
4. otherwise the port must be in ``AUDIO_URL_ALLOW_PORTS`` (default 80 and 443), and every address the
   host resolves to must be public: not loopback, private, link-local, multicast, reserved,
   unspecified, carrier-grade NAT, a cloud metadata address, or an IPv6 form of any of those.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from audiojobs.config import Settings
from audiojobs.errors import ConfigError

MAX_URL_LENGTH = 2048
SCHEMES = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses cloud providers serve instance metadata (and credentials) on. Most are link-local or
# private already; they are listed so the refusal says what they are.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.123", "100.100.100.200", "192.0.0.192",
    "fd00:ec2::254",
))
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# IPv4 as inet_aton reads it: 1 to 4 parts, each decimal, octal (0...) or hex (0x...).
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class Refused(Exception):
    """A URL or address the guard will not let through. ``code`` is the API's error code."""

    def __init__(self, message: str, code: str = "forbidden_url") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, normalised host (no trailing dot, IDNA), port, literal address."""

    scheme: str
    host: str
    port: int
    address: IPAddress | None


def _parse_entries(entries: Iterable[str], setting: str) -> frozenset[tuple[str, int | None]]:
    parsed: set[tuple[str, int | None]] = set()
    for entry in entries:
        try:
            parts = urlsplit(f"//{entry.strip()}")
            host, port = parts.hostname, parts.port
            if not host or parts.username is not None or parts.path:
                raise ValueError(entry)
            parsed.add((_normalise_host(host), port))
        except ValueError:
            raise ConfigError(f"{setting}: {entry!r} is not host or host:port") from None
    return frozenset(parsed)


@dataclass(frozen=True)
class UrlPolicy:
    allow_hosts: frozenset[tuple[str, int | None]] = frozenset()
    deny_hosts: frozenset[tuple[str, int | None]] = frozenset()
    allow_ports: frozenset[int] = frozenset({80, 443})

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(allow_hosts=_parse_entries(settings.url_allow_hosts, "AUDIO_URL_ALLOW_HOSTS"),
                   deny_hosts=_parse_entries(settings.url_deny_hosts, "AUDIO_URL_DENY_HOSTS"),
                   allow_ports=frozenset(settings.url_allow_ports))

    @staticmethod
    def _matches(entries: frozenset[tuple[str, int | None]], host: str, port: int) -> tuple[str, int | None] | None:
        for entry in ((host, port), (host, None)):
            if entry in entries:
                return entry
        return None

    def check_url(self, raw: str) -> Target:
        """The URL's target when the static rules allow it; Refused otherwise. Resolves nothing."""
        if len(raw) > MAX_URL_LENGTH:
            raise Refused(f"url is longer than {MAX_URL_LENGTH} characters", "invalid_url")
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
            raise Refused("url contains whitespace or control characters", "invalid_url")
        try:
            parts = urlsplit(raw)
            scheme = parts.scheme.lower()
            hostname = parts.hostname
            port = parts.port
        except ValueError:
            raise Refused("url is not a valid URL", "invalid_url") from None
        if scheme not in SCHEMES:
            raise Refused("url must use http or https", "unsupported_url_scheme")
        if "@" in parts.netloc or parts.username is not None:
            raise Refused("url must not contain a user name or password", "forbidden_url")
        if not hostname:
            raise Refused("url has no host", "invalid_url")
        return self.check_target(scheme, hostname, port if port is not None else SCHEMES[scheme])

    def check_target(self, scheme: str, raw_host: str, port: int) -> Target:
        """Static rules for a host and port (a URL's, a redirect's or a proxy CONNECT's)."""
        try:
            host = _normalise_host(raw_host)
        except ValueError:
            raise Refused("url has an invalid host name", "invalid_url") from None
        if not 0 < port < 65536:
            raise Refused("url has an invalid port", "invalid_url")
        if self._matches(self.deny_hosts, host, port):
            raise Refused(f"the host {host} is blocked on this server")
        address = literal_address(host)
        allowed = self._matches(self.allow_hosts, host, port)
        if (allowed is None or allowed[1] is None) and port not in self.allow_ports:
            raise Refused(f"port {port} is not allowed (allowed: {', '.join(map(str, sorted(self.allow_ports)))})")
        if allowed is None:
            if address is not None:
                check_address(address)
            elif host in LOCAL_NAMES or host.endswith(".localhost"):
                raise Refused(f"{host} is a local address")
        return Target(scheme, host, port, address)

    def is_allowed_host(self, target: Target) -> bool:
        return self._matches(self.allow_hosts, target.host, target.port) is not None

    def resolve(self, target: Target) -> list[IPAddress]:
        """Every address of ``target`` when all of them may be connected to; Refused otherwise."""
        if target.address is not None:
            return [target.address]
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"the host {target.host} could not be resolved ({exc})", "host_not_found") from None
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not self.is_allowed_host(target):
            for address in addresses:
                check_address(address, target.host)
        return addresses


def _normalise_host(raw: str) -> str:
    host = raw.strip().lower().rstrip(".")
    if not host:
        raise ValueError("empty host")
    if ":" in host:  # IPv6 literal (urlsplit has removed the brackets)
        return str(ipaddress.IPv6Address(host.split("%", 1)[0]))
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if not re.fullmatch(r"[a-z0-9_.-]+", host) or len(host) > 253:
        raise ValueError("bad host name")
    return host


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells, in any form a resolver accepts: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise Refused(f"{host} is not a valid address", "invalid_url") from None
    return None


def check_address(address: IPAddress, host: str | None = None) -> None:
    """Refused unless ``address`` is a public unicast address."""
    name = f"{host} ({address})" if host and host != str(address) else str(address)
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        check_address(embedded, host)
    if address in METADATA_ADDRESSES:
        raise Refused(f"{name} is a cloud metadata address")
    for test, what in ((address.is_loopback, "a loopback"), (address.is_unspecified, "an unspecified"),
                       (address.is_link_local, "a link-local"), (address.is_multicast, "a multicast"),
                       (address.version == 4 and address in CARRIER_GRADE_NAT, "a carrier-grade NAT"),
                       (address.is_private, "a private"), (address.is_reserved, "a reserved"),
                       (not address.is_global, "a non-public")):
        if test:
            raise Refused(f"{name} is {what} address")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
