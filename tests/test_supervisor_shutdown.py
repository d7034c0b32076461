"""The supervisor's shutdown always lets the process exit: ``run_forever`` waits for it, so a step that
raised used to leave the agent running after SIGTERM."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from agent.config import load_config
from agent.supervisor import Supervisor
from tests.integration.harness import write_config


def _supervisor(tmp_path: Path) -> Supervisor:
    """A supervisor of the integration tests' config whose spool and writer are mocks."""
    sup = Supervisor(load_config(write_config(tmp_path)))
    sup.spool = mock.MagicMock()
    sup.writer = mock.MagicMock()
    return sup


def test_a_failing_step_still_ends_the_shutdown_with_exit_code_1(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    sup.writer.stop.side_effect = RuntimeError("writer stuck")
    sup.shutdown()
    assert sup._stopped.is_set()
    assert sup.exit_code == 1


def test_state_that_cannot_be_recorded_does_not_stop_the_shutdown(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    sup.spool.set_input_stats.side_effect = TypeError("Dict key must be str")
    sup.shutdown()
    assert sup._stopped.is_set() and sup.exit_code == 0
    sup.spool.clear_agent_state.assert_called_once()  # `status` says no agent runs
    sup.spool.close.assert_called_once()

