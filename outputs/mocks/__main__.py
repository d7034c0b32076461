"""``python -m outputs.mocks <kind>``: run one vendor mock in the foreground.

Prints exactly one line, ``listening <url>``, once the socket is bound (E2E tests and the demo wait
for it), then serves until SIGTERM/SIGINT. Vendor-specific settings come as ``--option key=value``.

A kind is registered by one line in ``KINDS``: ``"module:function"``, where the function takes the
parsed ``argparse.Namespace`` (``tokens``: list[str], ``options``: dict[str, str]) and returns a
``MockApp``. Modules are imported lazily so one kind's dependencies never burden another.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from outputs.mocks.server import MockApp, MockServer

KINDS: dict[str, str] = {
    "elasticsearch": "outputs.mocks.elasticsearch:build_app",
    "splunk_hec": "outputs.mocks.splunk_hec:build_app",
}


def load_factory(kind: str) -> Callable[[argparse.Namespace], MockApp]:
    module, _, func = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), func)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m outputs.mocks", description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--tls-cert", help="PEM server certificate (serves HTTPS)")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    p.add_argument("--client-ca", help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--token", dest="tokens", action="append", default=[],
                   help="accepted credential (repeatable)")
    p.add_argument("--option", dest="raw_options", action="append", default=[],
                   metavar="KEY=VALUE", help="vendor-specific setting (repeatable)")
    args = p.parse_args(argv)
    options: dict[str, str] = {}
    for item in args.raw_options:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--option {key}: expected KEY=VALUE")
        options[key.strip()] = value
    args.options = options
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = load_factory(args.kind)(args)
    server = MockServer(app, host=args.host, port=args.port, certfile=args.tls_cert,
                        keyfile=args.tls_key, client_ca=args.client_ca)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
