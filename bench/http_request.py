"""CPU of one small request through the outputs' HTTP layer (``outputs.http.HttpClient``).

    .venv/bin/python bench/http_request.py [--requests 3000] [--repeat 3]

At low event rates every event travels alone, and each output pays a whole request for it: this is
the part of that cost the agent's own HTTP layer decides (headers, credentials, requests, urllib3,
http.client, gzip of a small bulk body, reading the answer). It sends ``--requests`` small ``_bulk``
requests, one at a time on one kept-alive connection, to the Elasticsearch mock in its own process
(``bench/delivery.py --serve-mock es --lean``), and prints the CPU of the sending thread per request
(``time.thread_time``: the mock's work is not counted). Plain threads, no gevent: the figure is the
layer's own, without the loop's switching. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outputs.http import HttpClient, HttpOutputConfig  # noqa: E402

BODY = (b'{"create":{"_index":"logs-clawdstrike.security-default",'
        b'"_id":"00000000-0000-4000-8000-000000000001"}}\n'
        b'{"@timestamp":"2026-11-26T08:00:01.001Z","event":{"kind":"event"},"message":"Allowed"}\n')


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    mock = subprocess.Popen([sys.executable, str(ROOT / "bench" / "delivery.py"), "--serve-mock", "es",
                             "--events", "1", "--lean"], stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert mock.stdout is not None
        url = mock.stdout.readline().decode().split()[1] + "/_bulk"
        client = HttpClient(HttpOutputConfig(), pool_size=2, auth=lambda: {"Authorization": "ApiKey x"})
        headers = {"Content-Type": "application/x-ndjson"}
        for _ in range(200):  # warm the connection and the caches
            client.request("POST", url, BODY, headers)
        per_request = []
        for _ in range(args.repeat):
            t0 = time.thread_time()
            for _ in range(args.requests):
                client.request("POST", url, BODY, headers)
            per_request.append((time.thread_time() - t0) / args.requests * 1e6)
        print(f"HttpClient.request, {len(BODY)}-byte gzip bulk body, {args.requests:,} requests x "
              f"{args.repeat}: {statistics.median(per_request):,.0f} us of the sending thread's CPU per "
              f"request (median; runs {', '.join(f'{x:,.0f}' for x in per_request)})")
    finally:
        mock.kill()
        mock.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
