"""Golden vectors: input records -> the exact canonical, ECS, OCSF and CEF bytes an output sends.

    .venv/bin/python tests/golden/regen.py          # rewrite every expected file
    .venv/bin/python tests/golden/regen.py --check  # exit 1 if one is stale (what test_golden.py does)

Run it after a deliberate change to a mapping or a transform, then review the diff of tests/golden/ like
code: every changed line is a change a SIEM parser will see. Inputs are the ``<case>.input.jsonl`` files
here (hand-built records covering every guard, action, severity and record shape) and the real hushd
0.1.0 captures, read in place from ../shared/fixtures (never copied here). Each input line gives one
output line in ``<case>.<variant>.<ext>``; every case is mapped with the same agent context and the
default [privacy] and [enrichment], as the agent does at ingest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agent.config_types import Secret  # noqa: E402
from agent.event import encode_event  # noqa: E402
from agent.mapping import MappingContext, parse_line  # noqa: E402
from tests.shared_paths import FIXTURES  # noqa: E402
from transforms.config import (  # noqa: E402
    CefConfig,
    EnrichmentConfig,
    FieldsConfig,
    PrivacyConfig,
    RedactConfig,
    RedactRule,
    TransformConfig,
)
from transforms.pipeline import build_pipeline, compile_ingest  # noqa: E402

GOLDEN = Path(__file__).resolve().parent

CONTEXT = MappingContext(labels={"team": "security", "site": "eu-1"}, environment="production",
                         tenant_id="acme-corp", host_name="dev-laptop",
                         postprocess=compile_ingest(PrivacyConfig(), EnrichmentConfig()))

#: variant -> (file extension, the output's transform settings)
VARIANTS: dict[str, tuple[str, TransformConfig]] = {
    "canonical": ("jsonl", TransformConfig()),
    "ecs": ("jsonl", TransformConfig(format="ecs")),
    "ocsf": ("jsonl", TransformConfig(format="ocsf")),
    "ocsf-activity": ("jsonl", TransformConfig(format="ocsf", ocsf_allowed_as_activity=True)),
    "cef": ("txt", TransformConfig(format="cef")),
}
#: Per-output options (redaction, overrides, raw copy), exercised on the privacy case.
OPTION_VARIANTS: dict[str, tuple[str, TransformConfig]] = {
    "ecs-options": ("jsonl", TransformConfig(
        format="ecs", include_raw=True,
        fields=FieldsConfig(rename={"clawdstrike.guard": "clawdstrike.rule"},
                            set={"labels.pipeline": "golden"}, exclude=["clawdstrike.metadata"]),
        redact=RedactConfig(builtin=["email"], rules=[
            RedactRule(path="agent.id", style="hash", hash_salt=Secret("golden-salt"))]))),
    "ocsf-options": ("jsonl", TransformConfig(
        format="ocsf", include_raw=True, fields=FieldsConfig(exclude=["observables"]),
        redact=RedactConfig(rules=[RedactRule(path="resource.name", style="keep", keep_first=4)]))),
    "cef-options": ("txt", TransformConfig(
        format="cef", cef=CefConfig(device_product="Clawdstrike Golden"),
        fields=FieldsConfig(set={"cs6Label": "site", "cs6": "eu-1"}, exclude=["flexString1"]),
        redact=RedactConfig(rules=[
            RedactRule(path="session.id", style="replace", replacement="[session]")]))),
    "canonical-options": ("jsonl", TransformConfig(
        fields=FieldsConfig(include=["event_id", "event_type", "decision", "resource", "mitre"],
                            exclude=["decision.policy_hash"]))),
}


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _webhook_bodies() -> list[bytes]:
    return [orjson.dumps(req["body"])
            for req in json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text())]


def _api_events() -> list[bytes]:
    body = json.loads((FIXTURES / "audit-api.response.json").read_text())["body"]
    return [orjson.dumps(rec) for rec in body["events"]]


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # shown in failures
    read: Callable[[], list[bytes]]
    variants: dict[str, tuple[str, TransformConfig]] = field(default_factory=lambda: dict(VARIANTS))


def _input(name: str, extra: dict[str, tuple[str, TransformConfig]] | None = None) -> Case:
    path = GOLDEN / f"{name}.input.jsonl"
    return Case(name, str(path.relative_to(ROOT)), lambda: _lines(path), {**VARIANTS, **(extra or {})})


_CAPTURES = "../shared/fixtures/clawdstrike/hushd-0.1.0/"
CASES: tuple[Case, ...] = (
    Case("hushd-0.1.0-audit-forward", _CAPTURES + "audit-forward.jsonl",
         lambda: _lines(FIXTURES / "audit-forward.jsonl")),
    Case("hushd-0.1.0-webhook", _CAPTURES + "audit-forward-webhook.requests.json", _webhook_bodies),
    Case("hushd-0.1.0-audit-api", _CAPTURES + "audit-api.response.json", _api_events),
    _input("hushd-guards"),
    _input("hushd-admin"),
    _input("security-event-v1"),
    _input("certification-webhook"),
    _input("adapter-audit"),
    _input("openclaw-audit"),
    _input("privacy", OPTION_VARIANTS),
)


def expected_path(case: Case, variant: str) -> Path:
    return GOLDEN / f"{case.name}.{variant}.{case.variants[variant][0]}"


def render(case: Case) -> dict[str, bytes]:
    """variant -> the file content: one rendered record per input line."""
    events = []
    for number, line in enumerate(case.read(), start=1):
        try:
            events.append(parse_line(line, context=CONTEXT))
        except Exception as exc:
            raise SystemExit(f"{case.source}: line {number} does not map: {exc}") from None
    out: dict[str, bytes] = {}
    for variant, (_, cfg) in case.variants.items():
        pipeline = build_pipeline(cfg)
        out[variant] = b"".join(pipeline.render(ev, encode_event(ev)) + b"\n" for ev in events)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rewrite (or --check) the golden vectors in tests/golden/.")
    ap.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = ap.parse_args(argv)
    stale = []
    for case in CASES:
        for variant, data in render(case).items():
            path = expected_path(case, variant)
            if path.exists() and path.read_bytes() == data:
                continue
            stale.append(path)
            if not args.check:
                path.write_bytes(data)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(ROOT)}")
    if not stale:
        print("golden vectors are current")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
