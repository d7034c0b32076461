"""Throwaway TLS material for tests: a trustme CA, a server certificate and a client certificate
(and, for negative tests, an unrelated CA and a certificate of the CA for another host name).

Why a fixture module: TLS, mTLS and proxy tests (and the E2E tests of the HTTP outputs) need real
PEM files on disk, because ``requests``, ``ssl`` and the agent's config take paths. Nothing is
checked in: every run makes a fresh CA, so no key material lives in the repo and nothing expires.

Use ``make_tls_files(tmp_path)`` directly, or the ``tls_files`` fixture (one set per session)
after ``from tests.certs import tls_files  # noqa: F401``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")
OTHER_HOST = "not-this-host.example"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files a TLS test needs (all under one temporary directory)."""

    ca_cert: Path  # the trusted CA: give it to the client as ca_file, or to a server as client_ca
    server_cert: Path  # server chain for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path  # client chain for mutual TLS (signed by the same CA)
    client_key: Path
    client_combined: Path  # client certificate and key in one file
    other_ca_cert: Path  # a second CA that signed nothing here: trusting it must fail
    # A server chain signed by the trusted CA for another host name (OTHER_HOST): the chain is good,
    # the name is not this server's, so a client checking the host name must refuse it.
    other_host_cert: Path
    other_host_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server-side context serving ``server_cert``; with ``require_client_cert`` it demands a
        client certificate signed by the CA (mTLS)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.ca_cert))
        return ctx


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate a CA, a server and a client certificate and write them as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="clawd-agent test CA")
    server = ca.issue_cert(*SERVER_NAMES)
    client = ca.issue_cert("clawd-agent-test-client@example.org",
                           common_name="clawd-agent test client")
    other = trustme.CA(organization_name="clawd-agent unrelated CA")
    elsewhere = ca.issue_cert(OTHER_HOST)

    def write(name: str, blobs: list[bytes]) -> Path:
        path = directory / name
        path.write_bytes(b"".join(blobs))
        path.chmod(0o600)
        return path

    return TlsFiles(
        ca_cert=write("ca.pem", [ca.cert_pem.bytes()]),
        server_cert=write("server.pem", [b.bytes() for b in server.cert_chain_pems]),
        server_key=write("server.key", [server.private_key_pem.bytes()]),
        client_cert=write("client.pem", [b.bytes() for b in client.cert_chain_pems]),
        client_key=write("client.key", [client.private_key_pem.bytes()]),
        client_combined=write("client-combined.pem",
                              [client.private_key_pem.bytes()]
                              + [b.bytes() for b in client.cert_chain_pems]),
        other_ca_cert=write("other-ca.pem", [other.cert_pem.bytes()]),
        other_host_cert=write("other-host.pem", [b.bytes() for b in elsewhere.cert_chain_pems]),
        other_host_key=write("other-host.key", [elsewhere.private_key_pem.bytes()]),
    )


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """One CA, server and client certificate set shared by a test session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))
