"""Console-script entry point: gevent's monkey patching must come before anything imports sockets.

Set CLAWD_AGENT_NO_MONKEYPATCH=1 only to debug; the agent's concurrency relies on the patching.
"""

import os


def main() -> None:
    if os.environ.get("CLAWD_AGENT_NO_MONKEYPATCH") != "1":
        from gevent import monkey

        monkey.patch_all()
    from agent.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
