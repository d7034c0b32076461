"""Docs that are generated from code must be current; every CLI command must have help."""

from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli
from agent.config_docs import render

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current():
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == render(), "run `python -m agent.config_docs` and commit docs/configuration.md"


def test_a_listen_address_default_is_shown_as_it_is_written():
    """It is a dataclass but written as a "host:port" string: the page said `(table)`, hiding the
    default and suggesting a TOML table, which the loader refuses."""
    page = render()
    assert "| `listen` | host:port | `'127.0.0.1:9464'` |" in page
    assert "(table)` | Address to bind" not in page


def test_every_cli_command_has_help_with_an_example():
    runner = CliRunner()

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, [*prefix, name])
            else:
                yield [*prefix, name], cmd

    commands = list(walk(cli, []))
    assert len(commands) >= 9
    for path, cmd in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example:" in (cmd.help or ""), f"`clawd-agent {' '.join(path)}` help lacks an Example"
