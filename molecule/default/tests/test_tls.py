"""TLS on the load balancers the inventory gives a certificate: HTTPS answers with that
certificate, HTTP redirects to HTTPS, only TLS 1.2 and 1.3 are spoken."""

from __future__ import annotations

import functools
import http.client
import socket
import ssl

import pytest
from conftest import address, get, hosts, hostvars, journal, lb_message, lb_port, lb_url, port
from conftest import testinfra_host as lab_host

LBS = [h for h in hosts("lb") if hostvars(h)["nginx_tls_certificate"]]
pytestmark = pytest.mark.skipif(not LBS, reason="no load balancer of the lab inventory has nginx_tls_certificate set")


@functools.cache
def certificate(name: str) -> str:
    return lab_host(name).file(hostvars(name)["nginx_tls_certificate"]).content_string


def handshake(name: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((address(name), port(name, "nginx_tls_port")), timeout=5)
    try:
        return context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


def pinned(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that does not check the certificate, speaking only `version` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


@pytest.mark.parametrize("name", LBS)
def test_https_answers_with_a_certificate_valid_for_its_address(name):
    # Verifies the chain and that the certificate names the address.
    context = ssl.create_default_context(cadata=certificate(name))
    conn = http.client.HTTPSConnection(address(name), port(name, "nginx_tls_port"), context=context, timeout=5)
    try:
        conn.request("GET", "/")
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.read().decode() == lb_message()
        assert answer.getheader("Strict-Transport-Security", "").startswith("max-age="), answer.getheaders()
    finally:
        conn.close()


@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("path", ["/", "/some/page?x=1"])
def test_http_redirects_to_https(name, path):
    conn = http.client.HTTPConnection(address(name), lb_port(name), timeout=5)
    conn.request("GET", path)
    answer = conn.getresponse()
    conn.close()
    tls_port = port(name, "nginx_tls_port")
    assert answer.status == 301
    shown = "" if tls_port == 443 else f":{tls_port}"  # not-a-default: HTTPS's own port, left out of URLs
    assert answer.getheader("Location") == f"https://{address(name)}{shown}{path}"


@pytest.mark.parametrize("name", LBS)
def test_internal_paths_stay_blocked_over_https(name):
    assert get(lb_url(name, "/metrics")).status == 404


@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_modern_tls_is_spoken(name, version):
    with handshake(name, pinned(version)) as tls:
        assert tls.version() == version.name.replace("_", ".")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("name", LBS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"])
def test_old_tls_is_refused_by_the_server(name, version):
    context = pinned(version)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old version at all
    with pytest.raises(ssl.SSLError) as refused:
        handshake(name, context).close()
    reason = refused.value.reason or str(refused.value)
    if reason in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL") and "ALERT" not in reason:
        pytest.skip(f"this controller's OpenSSL cannot offer {version.name} ({reason}), so the server is not asked")
    # The server's answer, a protocol_version alert, not a failure of this client.
    assert "ALERT_PROTOCOL_VERSION" in reason, refused.value


@pytest.mark.parametrize("name", LBS)
def test_nginx_accepts_its_configuration(infra, name):
    checked = infra(name).run("nginx -t")
    assert checked.rc == 0, checked.stderr + journal(infra(name), "nginx")
