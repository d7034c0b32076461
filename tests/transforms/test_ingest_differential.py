"""Differential test of the ingest hot path (mapping, enrichment, redaction, spool encoding).

The hot path is tuned for instructions per event (caches of clean strings, generated checks, inlined
helpers), and each such change must leave what reaches the spool exactly as it was. This maps a varied
corpus (every hushd 0.1.0 fixture, ``audit_line(i)`` with repeats so the caches both hit and miss, and
crafted lines with each kind of secret in every free-form place) with ``map_lines`` under several
``[privacy]`` settings, and compares every event (id bytes, timestamp ms, body) and every quarantine
record (reason, excerpt) with digests of them recorded from the code before the tuning:
``tests/transforms/ingest-differential.json``. Regenerate it only from a known-good tree:
``python -m tests.transforms.test_ingest_differential --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from agent.inputs.base import Line, map_lines
from agent.mapping import MappingContext
from tests.integration.harness import audit_line
from tests.shared_paths import FIXTURES
from transforms.config import EnrichmentConfig, PrivacyConfig, RedactRule
from transforms.pipeline import compile_ingest

GOLDEN = Path(__file__).resolve().parent / "ingest-differential.json"

_SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "bearer": "Authorization: Bearer abcdefghijklmnop1234",
    "password": "password=hunter2hunter2",
    "userinfo": "https://alice:s3cr3tw0rd@example.com/path",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "email": "alice@example.com",
    "ipv4": "10.1.2.3",
    "ipv6": "fe80::1",
}


def _crafted() -> list[bytes]:
    """hushd audit lines with a secret in each free-form place: target, message, metadata (value, key,
    nested), agent id, session id, guard, principal; blocked and allowed; egress to an IP."""
    out = []
    for n, (name, secret) in enumerate(sorted(_SECRETS.items())):
        base: dict[str, Any] = {
            "id": f"0000{n:04d}-0000-4000-8000-000000000000", "timestamp": f"2026-11-26T09:00:{n:02d}.5Z",
            "event_type": "violation", "action_type": "file_write", "target": f"/tmp/{name}.txt",
            "decision": "blocked", "guard": "secret_leak", "severity": "Error", "message": "Blocked",
            "agent_id": "agent-007", "metadata": {"policy_hash": "cd" * 32},
        }
        variants = [
            {"target": f"/tmp/{secret}"},
            {"message": f"found {secret} in file"},
            {"metadata": {"detail": secret, "policy_hash": "cd" * 32}},
            {"metadata": {"nested": {"list": ["x", secret]}}},
            {"metadata": {"api_key": f"v-{name}", "token": 42}},
            {"agent_id": secret},
            {"session_id": secret, "decision": "allowed", "severity": "Info"},
            {"guard": secret},
            {"metadata": {"principal": {"id": secret}}},
            {"action_type": "egress", "target": f"{secret}:443"},
            {"action_type": "egress", "target": "10.9.8.7:8443", "message": secret},
            {"event_type": "policy_reload", "action_type": "policy", "target": secret, "decision": "allowed"},
            {"id": secret},
        ]
        for k, v in enumerate(variants):
            rec = {**base, **v}
            if "id" not in v:
                rec["id"] = f"0000{n:04d}-{k:04d}-4000-8000-000000000000"
            out.append(orjson.dumps(rec))
    deep: dict[str, Any] = {"token": "deep-secret-value"}
    for _ in range(300):  # deeper than orjson encodes: the metadata cache cannot key it
        deep = {"d": deep}
    odd = (("00000099", deep), ("00000098", deep["d"]["d"]), ("00000097", {"n": 10 ** 30}))
    for head, metadata in odd:
        rec = {**base, "id": f"{head}-0000-4000-8000-000000000000", "metadata": metadata}
        out.append(json.dumps(rec).encode())
    out.append(b'{"not json ' + _SECRETS["aws"].encode())
    out.append(orjson.dumps({"what": _SECRETS["password"]}))
    out.append(orjson.dumps({"id": "x", "timestamp": "bad " + _SECRETS["github"], "event_type": "check",
                             "action_type": "shell", "decision": "allowed"}))
    return out


def _fixture_lines() -> list[bytes]:
    """Every record of the hushd 0.1.0 fixtures as a line (shapes that are not audit records are
    quarantined, which checks the redacted excerpts and reasons)."""
    lines = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
    lines += [orjson.dumps(r["body"]) for r in json.loads((FIXTURES / "audit-forward-webhook.requests.json")
                                                           .read_text())]
    lines += [orjson.dumps(e) for e in json.loads((FIXTURES / "audit-api.response.json").read_text())
              ["body"]["events"]]
    for path in sorted((FIXTURES / "checks").glob("*.json")):
        doc = json.loads(path.read_text())
        lines.append(orjson.dumps(doc))
        lines += [orjson.dumps(doc[k]["body"]) for k in ("request", "response")
                  if type(doc.get(k)) is dict and type(doc[k].get("body")) is dict]
    lines += [ln[len(b"data: "):] for ln in (FIXTURES / "sse-stream.txt").read_bytes().splitlines()
              if ln.startswith(b"data: ")]
    return [ln for ln in lines if ln.strip()]


def corpus() -> list[bytes]:
    fixtures = _fixture_lines()
    audit = [audit_line(i).rstrip(b"\n") for i in range(0, 6000, 5)]
    crafted = _crafted()
    # repeats: the second sight of a line takes the cached paths (known-clean strings and objects)
    return fixtures + audit + crafted + audit[:200] + crafted + fixtures


def _privacies() -> dict[str, PrivacyConfig | None]:
    return {
        "default": PrivacyConfig(),
        "off": None,
        "all-builtin": PrivacyConfig(builtin=["secrets", "email", "ipv4", "ipv6"]),
        "user": PrivacyConfig(builtin=["secrets"], rules=[
            RedactRule(pattern=r"agent-0\d+"), RedactRule(pattern=r"dev-lap"), RedactRule(pattern=r"securi"),
            RedactRule(pattern=r"0000-4000-80"),  # matches the crafted ids (source.id = event_id)
            RedactRule(pattern=r"file-1\d*7", style="keep", keep_first=2),
            RedactRule(pattern=r"forbidden", path="decision.reason")]),
        "paths": PrivacyConfig(builtin=[], rules=[RedactRule(path="resource.path"),
                                                  RedactRule(path="metadata.**", style="drop")]),
    }


def results(name: str) -> list[list[Any]]:
    """Per line, in order: ``[id hex, ms, body]`` or ``["Q", offset, reason, excerpt]`` (bytes decoded)."""
    privacy = _privacies()[name]
    post = compile_ingest(privacy if privacy is not None else PrivacyConfig(builtin=[]),
                          EnrichmentConfig(mitre=True))
    ctx = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                         host_name="dev-laptop", postprocess=post)
    lines, pos = [], 0
    for data in corpus():
        lines.append(Line(pos, pos + len(data) + 1, data))
        pos += len(data) + 1
    out: list[list[Any]] = []
    for i in range(0, len(lines), 500):
        events, quarantined = map_lines(lines[i:i + 500], source="diff", context=ctx, kind=None,
                                        max_line_bytes=1 << 20)
        out += [[e[0].hex(), e[1], e[2].decode()] for e in events]
        out += [["Q", q.offset, q.reason, q.excerpt.decode("utf-8", "replace")] for q in quarantined]
    return out


def digest(record: list[Any]) -> str:
    """What the golden file keeps of a record: 12 hex digits of its SHA-256 (the file stays small)."""
    return hashlib.sha256(orjson.dumps(record)).hexdigest()[:12]


def test_ingest_output_is_unchanged_by_hot_path_tuning() -> None:
    expected = json.loads(GOLDEN.read_text())
    assert set(expected) == set(_privacies())
    for name in expected:
        got = results(name)
        assert len(got) == len(expected[name]), name
        for n, (record, want) in enumerate(zip(got, expected[name], strict=True)):
            assert digest(record) == want, f"[privacy] {name}: record {n} differs from before: {record}"


def test_the_corpus_reaches_redaction() -> None:
    """The digests only mean something if the corpus exercises redaction: secrets are masked by the
    default [privacy] and kept without it (so a redactor that matched nothing would fail here)."""
    post = compile_ingest(PrivacyConfig(), None)
    ctx = MappingContext(postprocess=post)
    plain = MappingContext()
    lines = [Line(0, 1, d) for d in _crafted()]
    events, _ = map_lines(lines, source="t", context=ctx, kind=None, max_line_bytes=1 << 20)
    raw, _ = map_lines(lines, source="t", context=plain, kind=None, max_line_bytes=1 << 20)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "hunter2hunter2", "s3cr3tw0rd", "ghp_A1b2"):
        assert any(secret.encode() in e[2] for e in raw)
        assert not any(secret.encode() in e[2] for e in events)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.transforms.test_ingest_differential --write")
    GOLDEN.write_text(json.dumps({name: [digest(r) for r in results(name)] for name in _privacies()},
                                 indent=0) + "\n")
