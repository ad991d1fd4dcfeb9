"""Hostile URLs and the code each must be refused with.

``{canary}`` is the port of a loopback server that must never receive a request (its port is in
AUDIO_URL_ALLOW_PORTS, so only the address rule stands between it and the worker); ``{media}`` is the
allowed test server (host:port in AUDIO_URL_ALLOW_HOSTS); ``{hostname}`` is this machine's name,
which resolves to a loopback or private address; ``blocked.example.com`` is in AUDIO_URL_DENY_HOSTS.

``when`` says where the refusal happens: "submit" (422 with ``code``) or "late" (the URL looks fine
until it is resolved or redirected: the job fails with ``forbidden_url``).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class HostileUrl:
    template: str
    when: str  # "submit" or "late"
    code: str  # the 422 code at submit; late ones fail with forbidden_url
    why: str

    def url(self, canary: int, media: str) -> str:
        return self.template.format(canary=canary, media=media, hostname=machine_name())


def machine_name() -> str:
    return socket.gethostname()


def machine_name_is_local() -> bool:
    try:
        infos = socket.getaddrinfo(machine_name(), 80, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return all(not ipaddress.ip_address(i[4][0].split("%")[0]).is_global for i in infos)


F = "forbidden_url"
HOSTILE_URLS: tuple[HostileUrl, ...] = (
    HostileUrl("http://127.0.0.1:{canary}/a.mp3", "submit", F, "loopback"),
    HostileUrl("http://2130706433:{canary}/a.mp3", "submit", F, "loopback as one decimal number"),
    HostileUrl("http://017700000001:{canary}/a.mp3", "submit", F, "loopback as one octal number"),
    HostileUrl("http://0177.0.0.1:{canary}/a.mp3", "submit", F, "loopback, dotted octal"),
    HostileUrl("http://0x7f000001:{canary}/a.mp3", "submit", F, "loopback as one hex number"),
    HostileUrl("http://0x7f.0x0.0x0.0x1:{canary}/a.mp3", "submit", F, "loopback, dotted hex"),
    HostileUrl("http://127.1:{canary}/a.mp3", "submit", F, "loopback, short form"),
    HostileUrl("http://[::1]:{canary}/a.mp3", "submit", F, "IPv6 loopback"),
    HostileUrl("http://[::ffff:127.0.0.1]:{canary}/a.mp3", "submit", F, "IPv4-mapped IPv6 loopback"),
    HostileUrl("http://[::ffff:7f00:1]:{canary}/a.mp3", "submit", F, "IPv4-mapped IPv6 loopback, hex"),
    HostileUrl("http://0.0.0.0:{canary}/a.mp3", "submit", F, "unspecified address"),
    HostileUrl("http://0:{canary}/a.mp3", "submit", F, "unspecified address, short form"),
    HostileUrl("http://169.254.169.254/latest/meta-data/", "submit", F, "cloud metadata (AWS, GCP, Azure)"),
    HostileUrl("http://[fd00:ec2::254]/latest/meta-data/", "submit", F, "AWS IPv6 metadata"),
    HostileUrl("http://100.100.100.200/latest/meta-data/", "submit", F, "Alibaba metadata"),
    HostileUrl("http://localhost:{canary}/a.mp3", "submit", F, "localhost"),
    HostileUrl("http://localhost.:{canary}/a.mp3", "submit", F, "localhost with a trailing dot"),
    HostileUrl("http://LocalHost:{canary}/a.mp3", "submit", F, "localhost in mixed case"),
    HostileUrl("http://media.localhost:{canary}/a.mp3", "submit", F, "a .localhost name"),
    HostileUrl("http://10.0.0.1/a.mp3", "submit", F, "private 10/8"),
    HostileUrl("http://172.16.5.4/a.mp3", "submit", F, "private 172.16/12"),
    HostileUrl("http://192.168.0.1/a.mp3", "submit", F, "private 192.168/16"),
    HostileUrl("http://100.64.0.1/a.mp3", "submit", F, "carrier-grade NAT"),
    HostileUrl("http://224.0.0.1/a.mp3", "submit", F, "multicast"),
    HostileUrl("http://240.0.0.1/a.mp3", "submit", F, "reserved"),
    HostileUrl("http://255.255.255.255/a.mp3", "submit", F, "broadcast"),
    HostileUrl("http://[fe80::1]/a.mp3", "submit", F, "IPv6 link-local"),
    HostileUrl("http://[fc00::1]/a.mp3", "submit", F, "IPv6 unique local"),
    HostileUrl("http://[64:ff9b::7f00:1]/a.mp3", "submit", F, "NAT64 of loopback"),
    HostileUrl("http://[2002:7f00:1::]/a.mp3", "submit", F, "6to4 of loopback"),
    HostileUrl("file:///etc/passwd", "submit", "unsupported_url_scheme", "file scheme"),
    HostileUrl("gopher://127.0.0.1:{canary}/_GET%20/", "submit", "unsupported_url_scheme", "gopher scheme"),
    HostileUrl("data:audio/mpeg;base64,SUQzBAAAAAAA", "submit", "unsupported_url_scheme", "data URL"),
    HostileUrl("ftp://example.com/a.mp3", "submit", "unsupported_url_scheme", "ftp scheme"),
    HostileUrl("http://{media}@127.0.0.1:{canary}/a.mp3", "submit", F, "userinfo naming the allowed host"),
    HostileUrl("http://127.0.0.1:{canary}\\@{media}/a.mp3", "submit", F, "backslash userinfo confusion"),
    HostileUrl("http://user:secret@example.com/a.mp3", "submit", F, "credentials in the URL"),
    HostileUrl("http://example.com:8080/a.mp3", "submit", F, "a port not in AUDIO_URL_ALLOW_PORTS"),
    HostileUrl("http://example.com:22/a.mp3", "submit", F, "the ssh port"),
    HostileUrl("http://blocked.example.com/a.mp3", "submit", F, "a host in AUDIO_URL_DENY_HOSTS"),
    HostileUrl("http:///a.mp3", "submit", "invalid_url", "no host"),
    HostileUrl("http://[::1/a.mp3", "submit", "invalid_url", "broken IPv6 literal"),
    HostileUrl("http://{hostname}:{canary}/a.mp3", "late", F, "a name that resolves to this machine"),
    HostileUrl("http://{media}/redirect?to=http://127.0.0.1:{canary}/a.mp3", "late", F,
               "a redirect from the allowed server into loopback"),
    HostileUrl("http://{media}/redirect?to=http%3A%2F%2F{media}%2Fredirect%3Fto%3Dhttp%3A%2F%2F169.254.169.254%2F",
               "late", F, "a redirect chain ending at the metadata address"),
    HostileUrl("http://{media}/redirect?to=http://localhost.:{canary}/a.mp3", "late", F,
               "a redirect to localhost."),
)
