"""Generates docs/configuration.md from the config dataclasses, so the reference never drifts.

Run `python -m agent.config_docs` after changing a config field; a test fails when the page is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.config import AgentSection, MetricsSection, SpoolSection
from agent.config_loader import describe
from agent.inputs.config import INPUT_TYPES
from outputs.base import FilterConfig, RouteConfig
from outputs.registry import OUTPUT_TYPES
from transforms.config import (
    CefConfig,
    EnrichmentConfig,
    FieldsConfig,
    MitreRule,
    PrivacyConfig,
    RedactConfig,
    RedactRule,
)

HEADER = """# agent.toml reference

Generated from the code by `python -m agent.config_docs`; do not edit by hand.

`clawd-agent check-config` validates a file: an unknown key or a wrong type is an error that names the
file and the key. Any string, credentials included, may use `${ENV_VAR}` anywhere in it
(`"Bearer ${API_TOKEN}"`, `"http://shipper:${PROXY_PASS}@proxy:3128"`); an unset variable is an error
that names it, and `$${NAME}` stands for a literal `${NAME}`. A variable in a URL's user info (before
the `@`) holds the name or password as it is and is percent-encoded there. Credential keys (marked
*secret*) also accept `file:/path` (the path may use `${ENV_VAR}` too), re-read when the file
changes, so a rotated credential needs no restart; their values, and the variables expanded into
them, never appear in logs, errors, status or metrics. A credential that is empty (an empty literal,
a variable set to nothing, an empty file) is an error: leave the key out to leave it unset. Sizes
are integers or strings such as `"100MiB"`; durations are seconds or strings such as `"250ms"`,
`"10m"`, `"24h"`.
"""


def _table(cls: type) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, text in describe(cls):
        rows.append(f"| `{key}` | {typ} | `{default}` | {text} |")
    return rows


def render() -> str:
    parts = [HEADER]
    for title, cls in (("[agent]", AgentSection), ("[spool]", SpoolSection), ("[metrics]", MetricsSection)):
        parts += [f"## {title}", "", (cls.__doc__ or "").strip(), "", *_table(cls), ""]
    for name, cls in INPUT_TYPES.items():
        parts += [f"## [inputs.<name>] type = \"{name}\"", "", (cls.__doc__ or "").strip(), "",
                  *_table(cls), ""]
    for name, (cls, out_cls) in OUTPUT_TYPES.items():
        doc = (sys.modules[out_cls.__module__].__doc__ or "").strip().split("\n\n")[0]
        parts += [f"## [outputs.<name>] type = \"{name}\"", "", doc, "", *_table(cls), ""]
    for title, cls in (("[outputs.<name>.filter]", FilterConfig),
                       ("[[outputs.<name>.routes]]", RouteConfig),
                       ("[outputs.<name>.fields]", FieldsConfig),
                       ("[outputs.<name>.cef]", CefConfig),
                       ("[outputs.<name>.redact] (per output, on top of [privacy])", RedactConfig),
                       ("[privacy] (at ingest: the spool never holds what it masks)", PrivacyConfig),
                       ("[[privacy.rules]] and [[outputs.<name>.redact.rules]]", RedactRule),
                       ("[enrichment]", EnrichmentConfig),
                       ("[[enrichment.rules]]", MitreRule)):
        parts += [f"## {title}", "", (cls.__doc__ or "").strip(), "", *_table(cls), ""]
    return "\n".join(parts)


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
