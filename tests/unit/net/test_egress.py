"""The guarded egress proxy on its own: CONNECT tunnels, forwarding, refusals, the byte budget."""

from __future__ import annotations

import http.client
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiojobs.checks import check_settings
from audiojobs.config import Settings
from audiojobs.errors import ConfigError
from audiojobs.net.egress import EgressProxy
from audiojobs.net.urlguard import Refused, UrlPolicy, literal_address
from tests.services import JFK_FLAC, MediaServer


@pytest.fixture
def site(tmp_path: Path) -> Iterator[MediaServer]:
    (tmp_path / "site").mkdir()
    shutil.copy(JFK_FLAC, tmp_path / "site" / "jfk.flac")
    server = MediaServer(tmp_path / "site")
    yield server
    server.stop()


def _proxy(site: MediaServer, max_bytes: int = 10**9) -> EgressProxy:
    policy = UrlPolicy(allow_hosts=frozenset({("127.0.0.1", site.port)}))
    return EgressProxy(policy, connect_timeout=2, deadline_seconds=10, max_bytes=max_bytes)


def _port(proxy: EgressProxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def test_connect_tunnel_to_an_allowed_host(site: MediaServer) -> None:
    with _proxy(site) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
        conn.set_tunnel("127.0.0.1", site.port)
        conn.request("GET", "/jfk.flac")
        assert conn.getresponse().read() == JFK_FLAC.read_bytes()
        conn.close()
    assert proxy.refusals == [] and proxy.bytes_in > JFK_FLAC.stat().st_size


def test_plain_http_is_forwarded_with_connection_close(site: MediaServer) -> None:
    with _proxy(site) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
        conn.request("GET", site.url("jfk.flac"), headers={"Proxy-Connection": "keep-alive"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == JFK_FLAC.read_bytes()
        conn.close()


def test_refused_targets_get_403_and_are_recorded(site: MediaServer, tmp_path: Path) -> None:
    (tmp_path / "canary").mkdir()
    canary = MediaServer(tmp_path / "canary")
    try:
        with _proxy(site) as proxy:
            conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
            conn.set_tunnel("127.0.0.1", canary.port)
            with pytest.raises(OSError, match="403"):
                conn.request("GET", "/")
            conn.close()
            for url in (f"http://127.0.0.1:{canary.port}/", "http://169.254.169.254/", "ftp://example.com/"):
                conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
                conn.request("GET", url)
                assert conn.getresponse().status == 403, url
                conn.close()
        assert len(proxy.refusals) == 4
    finally:
        canary.stop()
    assert canary.requests == []


def test_byte_budget_cuts_the_connection(site: MediaServer) -> None:
    with _proxy(site, max_bytes=64 * 1024) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
        conn.request("GET", site.url("jfk.flac"))
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        conn.close()
    assert proxy.cut_off == "size"


@pytest.mark.parametrize(("host", "address"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("0", "0.0.0.0"), ("10.1", "10.0.0.1"), ("example.com", None), ("1.2.3.4.5", None), ("999.1.1.1", "invalid"),
])
def test_literal_addresses_in_every_spelling(host: str, address: str | None) -> None:
    if address == "invalid":
        with pytest.raises(Refused):
            literal_address(host)
    else:
        found = literal_address(host)
        assert (str(found) if found else None) == address


def test_bad_allow_and_deny_entries_are_config_errors() -> None:
    for name in ("AUDIO_URL_ALLOW_HOSTS", "AUDIO_URL_DENY_HOSTS"):
        with pytest.raises(ConfigError, match=name):
            check_settings(Settings.from_env({name: "good.example.com,bad host"}))
        with pytest.raises(ConfigError, match=name):
            check_settings(Settings.from_env({name: "example.com:99999"}))
    with pytest.raises(ConfigError, match="AUDIO_URL_ALLOW_PORTS"):
        Settings.from_env({"AUDIO_URL_ALLOW_PORTS": "80,http"})
    policy = UrlPolicy.from_settings(Settings.from_env({"AUDIO_URL_ALLOW_HOSTS": "Media.Example.com.:8080,[::1]"}))
    assert policy.allow_hosts == {("media.example.com", 8080), ("::1", None)}
