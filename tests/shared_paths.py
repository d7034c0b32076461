"""Where ../shared lives: beside the project root, in a developer's tree and in CI's clean clone alike."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "clawdstrike" / "hushd-0.1.0"
SCHEMAS = SHARED / "schemas"
VENDOR_SPECS = SHARED / "vendor-specs"
