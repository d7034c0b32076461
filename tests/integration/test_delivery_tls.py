"""TLS through the real agent process: HEC and Elasticsearch mocks over HTTPS with a CA made in the
test (tests/certs.py, trustme), trusted via ``ca_file``; and mutual TLS demanded by the mocks.

The Elasticsearch mock runs as ``python -m outputs.mocks elasticsearch --tls-cert ...`` (the runner
the demo uses), the HEC mock in this process so every stored event can be read back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.certs import TlsFiles, make_tls_files
from tests.integration.delivery_harness import (
    ES_STREAM,
    DeliveryAgent,
    Mock,
    assert_es_spec_clean,
    es_output,
    hec_app,
    hec_output,
    output_status,
    start_process_mock,
    start_thread_mock,
    status,
    wait_until,
    write_agent_config,
    write_events,
)

pytestmark = pytest.mark.integration

HEC_TOKEN = "0b7c1a52-9e0d-4f3a-8c6b-2d4e6f8a0b1c"
WAIT = 120


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


def _mocks(tls: TlsFiles, *, mtls: bool) -> tuple[Mock, Mock]:
    hec = start_thread_mock(hec_app([HEC_TOKEN]), "splunk_hec", tls=tls, mtls=mtls)
    try:
        es = start_process_mock("elasticsearch", tls=tls, mtls=mtls)
    except BaseException:
        hec.stop()
        raise
    return hec, es


def _config(tmp: Path, hec: Mock, es: Mock, **tls_keys: str) -> Path:
    return write_agent_config(tmp, {"splunk": hec_output(hec, HEC_TOKEN, batch_max_events=100, **tls_keys),
                                    "es": es_output(es, batch_max_events=100, **tls_keys)})


def _run_until(tmp: Path, cfg: Path, cond, what: str) -> None:
    """Start the agent, wait for ``cond``, stop it cleanly."""
    agent = DeliveryAgent(cfg, tmp / "agent.log").start()
    try:
        agent.wait_running(WAIT)
        wait_until(cond, WAIT, what)
    finally:
        if agent.alive():
            assert agent.stop() == 0


def _delivered(hec: Mock, es: Mock, ids: list[str]) -> bool:
    return set(hec.app.event_ids()) >= set(ids) and set(es.es_docs(ES_STREAM)) >= set(ids)


def _tls_errors(hec: Mock, es: Mock) -> tuple[int, int]:
    """Handshakes each mock refused so far."""
    assert hec.server is not None
    return (hec.server.stats()["requests_by_status"].get("tls_error", 0),
            es.stats()["requests_by_status"].get("tls_error", 0))


def _refused_everywhere(cfg: Path, needle: str, backlog: int) -> bool:
    """Both outputs report ``needle`` as their last error and hold all ``backlog`` events."""
    outs = status(cfg)["outputs"]
    return bool(outs) and all(needle in (o["last_error"] or "") and o["lag_events"] == backlog
                              for o in outs.values())


def test_custom_ca_delivers_and_without_it_nothing_is_lost(tmp_path: Path, tls: TlsFiles) -> None:
    """Without ca_file the system store does not know the test CA: delivery fails with a certificate
    error in status and the events wait in the spool; with ca_file (after a restart) all arrive."""
    hec, es = _mocks(tls, mtls=False)
    try:
        n = 500
        (tmp_path / "in").mkdir()
        ids = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
        cfg = _config(tmp_path, hec, es)
        _run_until(tmp_path, cfg, lambda: _refused_everywhere(cfg, "certificate verify failed", n),
                   "both outputs to report the certificate error")
        doc = status(cfg)
        for name in ("splunk", "es"):
            assert doc["outputs"][name]["lag_events"] == n and doc["outputs"][name]["delivered_total"] == 0
        assert hec.app.event_ids() == [] and es.es_docs(ES_STREAM) == {}
        assert min(_tls_errors(hec, es)) >= 1

        cfg = _config(tmp_path, hec, es, ca_file=str(tls.ca_cert))
        _run_until(tmp_path, cfg, lambda: _delivered(hec, es, ids), "delivery with ca_file")
        assert sorted(hec.app.event_ids()) == sorted(ids)  # each once: nothing was half-sent before
        assert set(es.es_docs(ES_STREAM)) == set(ids)
        doc = status(cfg)
        assert all(doc["outputs"][name]["lag_events"] == 0 for name in ("splunk", "es"))

        # Trusting an unrelated CA is no better than trusting none.
        more = write_events(tmp_path / "in" / "audit.jsonl", n, n + 10)
        cfg = _config(tmp_path, hec, es, ca_file=str(tls.other_ca_cert))
        before = _tls_errors(hec, es)
        _run_until(tmp_path, cfg, lambda: _refused_everywhere(cfg, "certificate verify failed", 10)
                   and all(a > b for a, b in zip(_tls_errors(hec, es), before, strict=True)),
                   "new handshakes refused with the wrong CA")
        assert not set(more) & (set(hec.app.event_ids()) | set(es.es_docs(ES_STREAM)))
        assert_es_spec_clean(es)
    finally:
        hec.stop()
        es.stop()


def test_certificate_of_the_trusted_ca_for_another_host_is_refused(tmp_path: Path, tls: TlsFiles) -> None:
    """Both mocks present a certificate signed by the CA the agent trusts (ca_file), but made for
    another host name: a good chain is not enough, the name must be the server's. Both outputs
    refuse the handshake with a host name error, nothing is delivered, and the events wait in the
    spool. Seen in order: whichever comes first, a delivery or both refusals, is checked."""
    elsewhere = dataclasses.replace(tls, server_cert=tls.other_host_cert, server_key=tls.other_host_key)
    hec, es = _mocks(elsewhere, mtls=False)
    es.check_hostname = False  # the test's own control requests (the agent's are the subject)
    try:
        n = 100
        (tmp_path / "in").mkdir()
        ids = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
        cfg = _config(tmp_path, hec, es, ca_file=str(tls.ca_cert))
        _run_until(tmp_path, cfg, lambda: _refused_everywhere(cfg, "certificate verify failed", n)
                   or bool(hec.app.event_ids() or es.es_docs(ES_STREAM)),
                   "both outputs to refuse the certificate (or a delivery)")
        assert hec.app.event_ids() == [] and es.es_docs(ES_STREAM) == {}, "another name's server trusted"
        doc = status(cfg)
        for name in ("splunk", "es"):
            out = doc["outputs"][name]
            assert out["lag_events"] == n and out["delivered_total"] == 0 and out["dlq"] == 0
            assert "mismatch" in out["last_error"], out["last_error"]  # the name, not the chain
        assert min(_tls_errors(hec, es)) >= 1
        assert status(cfg)["outputs"]["splunk"]["lag_events"] == len(ids)  # kept after the stop
    finally:
        hec.stop()
        es.stop()


def test_mtls_delivers_with_a_client_certificate_and_is_refused_without(tmp_path: Path,
                                                                        tls: TlsFiles) -> None:
    """Both mocks demand a client certificate signed by the test CA: without client_cert the
    handshake is refused and nothing is delivered (nor lost); with it everything arrives."""
    hec, es = _mocks(tls, mtls=True)
    try:
        n = 500
        (tmp_path / "in").mkdir()
        ids = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
        cfg = _config(tmp_path, hec, es, ca_file=str(tls.ca_cert))
        _run_until(tmp_path, cfg, lambda: _refused_everywhere(cfg, "SSLError", n),
                   "both outputs to report the refused handshake")
        doc = status(cfg)
        for name in ("splunk", "es"):
            assert doc["outputs"][name]["lag_events"] == n and doc["outputs"][name]["delivered_total"] == 0
        assert hec.app.event_ids() == [] and es.es_docs(ES_STREAM) == {}
        assert min(_tls_errors(hec, es)) >= 1

        cfg = _config(tmp_path, hec, es, ca_file=str(tls.ca_cert), client_cert=str(tls.client_cert),
                      client_key=str(tls.client_key))
        _run_until(tmp_path, cfg, lambda: _delivered(hec, es, ids), "delivery with the client certificate")
        assert sorted(hec.app.event_ids()) == sorted(ids)
        assert set(es.es_docs(ES_STREAM)) == set(ids)
        assert output_status(cfg, "es")["lag_events"] == 0
        assert_es_spec_clean(es)
    finally:
        hec.stop()
        es.stop()
