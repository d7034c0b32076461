"""C shippers on the same host, with the same input and the same Elasticsearch mock as
``bench/delivery.py``'s es run, so its figure can be read against theirs measured here and now.

    .venv/bin/python bench/reference_shippers.py [--shipper syslog-ng,rsyslog] [--queue memory,disk]
        [--events 200000] [--repeat 1] [--batch 2000] [--workers 2]

Why: issue 4's 40,000 events/s target says C shippers "doing the same JSON-parsing work here reach
35,000-43,000 events/s", and hosts differ from session to session (the same agent code needed 42-46 us
of CPU an event on one host and 72-77 on another). This runs two C shippers from Debian on the same
200,000 hushd audit lines, against the same lean ES mock process (``bench/delivery.py --serve-mock es
--lean``), timed the same way: from the first request the mock saw to the moment it had stored the N-th
event.

What they do is less than the agent does. Each reads the file, parses every line as JSON and sends the
parsed fields back as the document, with the hushd id as ``_id`` and ``create`` as the bulk operation
(so a retry never duplicates, as in the agent's output); no canonical mapping, no secret redaction, no
ECS document, no gzip. Queues:

- ``memory``: an in-memory queue; a crash loses what it held.
- ``disk``: syslog-ng's ``disk-buffer(reliable(yes))`` (each message written to the buffer file before
  it is acknowledged to the source; the nearest to the agent's durable spool), rsyslog's disk-assisted
  action queue (spills to disk only when its memory part is full; not crash-safe in between).

Needs the shippers from Debian: ``apt-get install syslog-ng-core syslog-ng-mod-http`` or ``apt-get install
rsyslog rsyslog-elasticsearch`` (the two packages conflict: one at a time; a missing one is skipped with
a note). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import delivery  # the mock process, CPU readings and the input generator

RSYSLOG_MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog",
                       "/usr/lib/rsyslog")
TIMEOUT_S = 300.0


def _rsyslog_modules() -> str | None:
    for d in RSYSLOG_MODULE_DIRS:
        if os.path.exists(os.path.join(d, "omelasticsearch.so")):
            return d
    return None


def _syslog_ng_binary() -> str | None:
    """syslog-ng, when its http() module is installed too."""
    binary = shutil.which("syslog-ng")
    return binary if binary and list(Path("/usr/lib/syslog-ng").glob("*/libhttp.so")) else None


def _rsyslogd_binary() -> str | None:
    """rsyslogd, when its Elasticsearch module is installed too."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    return binary if os.path.exists(binary) and _rsyslog_modules() is not None else None


def syslog_ng(binary: str, tmp: Path, port: int, queue: str, batch: int, workers: int) -> list[str]:
    """``file()`` source from the start of the file, ``json-parser()``, and the ``http()`` destination
    building the bulk body itself (an action line and the fields as JSON per message)."""
    buffer = (f'disk-buffer(reliable(yes) disk-buf-size(4294967296) mem-buf-size(16777216) dir("{tmp}/buf"))'
              if queue == "disk" else "")
    (tmp / "buf").mkdir()
    action = r'{\"create\":{\"_index\":\"clawd-ref\",\"_id\":\"${.j.id}\"}}'
    conf = tmp / "syslog-ng.conf"
    conf.write_text(f"""@version: 3.38
options {{ threaded(yes); stats_freq(0); log-fifo-size({max(200_000, batch * workers * 4)}); }};
source s {{ file("{tmp}/in/audit.jsonl" flags(no-parse) log-fetch-limit({batch}) log-iw-size(200000)
           follow-freq(1)); }};
parser p {{ json-parser(prefix(".j.")); }};
destination d {{ http(url("http://127.0.0.1:{port}/_bulk") method("POST")
  headers("Content-Type: application/x-ndjson") batch-lines({batch}) batch-bytes(10MB) batch-timeout(100)
  workers({workers}) {buffer} delimiter("\\n") body-suffix("\\n")
  body("{action}\\n$(format-json --key .j.* --shift-levels 2)"));
}};
log {{ source(s); parser(p); destination(d); }};
""")
    return [binary, "-F", "-f", str(conf), "-R", str(tmp / "persist"), "-p", str(tmp / "pid"),
            "-c", str(tmp / "ctl"), "--no-caps"]


def rsyslog(binary: str, tmp: Path, port: int, queue: str, batch: int, workers: int) -> list[str]:
    """imfile from the start of the file, mmjsonparse (``cookie=""``: the line is plain JSON) and
    omelasticsearch in bulk mode (a request per dequeued batch, up to 10 MiB)."""
    mods = _rsyslog_modules()
    q = (f'queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="{batch}" '
         f'queue.workerThreads="{workers}"')
    action_q = q if queue == "memory" else (f'{q} queue.filename="es" queue.spoolDirectory="{tmp}/buf" '
                                            'queue.maxDiskSpace="4g" queue.saveOnShutdown="on"')
    (tmp / "buf").mkdir()
    (tmp / "work").mkdir()
    conf = tmp / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{tmp}/work" maxMessageSize="64k")
module(load="{mods}/imfile.so" mode="inotify")
module(load="{mods}/mmjsonparse.so")
module(load="{mods}/omelasticsearch.so")
template(name="doc" type="list") {{ property(name="$!all-json") }}
template(name="docid" type="list") {{ property(name="$!id") }}
ruleset(name="ship" {q}) {{
  action(type="mmjsonparse" cookie="" useRawMsg="on")
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" searchIndex="clawd-ref"
         template="doc" bulkmode="on" maxbytes="10m" writeoperation="create" bulkid="docid"
         dynbulkid="on" esVersion.major="8" action.resumeRetryCount="-1" {action_q})
}}
input(type="imfile" File="{tmp}/in/audit.jsonl" Tag="hushd" ruleset="ship" readMode="0"
      freshStartTail="off" maxLinesAtOnce="0")
""")
    return [binary, "-n", "-f", str(conf), "-i", str(tmp / "rsyslogd.pid")]


#: Each shipper: where its binary is (None: not installed), and its command line for a run.
SHIPPERS: dict[str, tuple[Callable[[], str | None], Callable[[str, Path, int, str, int, int], list[str]]]] = {
    "syslog-ng": (_syslog_ng_binary, syslog_ng), "rsyslog": (_rsyslogd_binary, rsyslog)}


def version(cmd: list[str]) -> str:
    flag = "-V" if "syslog-ng" in cmd[0] else "-v"
    out = subprocess.run([cmd[0], flag], capture_output=True, text=True).stdout.splitlines()
    return out[0].replace("compiled with:", "").strip() if out else "?"


def run_once(shipper: str, binary: str, n: int, queue: str, batch: int, workers: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"clawd-bench-{shipper}-"))
    mock = delivery.MockProcess.start("es", expect=n, lean=True)
    proc = None
    try:
        delivery.write_input(tmp, n)
        cmd = SHIPPERS[shipper][1](binary, tmp, int(mock.url.rsplit(":", 1)[1]), queue, batch, workers)
        mock_cpu0 = mock.cpu()
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        summary: dict = {}
        while time.time() < t0 + TIMEOUT_S:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"{shipper} exited {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
            summary = mock.get("summary")
            if summary["done_at"]:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{shipper}: not done after {TIMEOUT_S:.0f} s "
                               f"(mock stored {summary.get('accepted')})")
        cpu = delivery.cpu_seconds(proc.pid)
        return {"version": version(cmd), "rate": n / (summary["done_at"] - summary["first_arrival"]),
                "rate_start": n / (summary["done_at"] - t0), "cpu_100k": cpu / n * 100_000,
                "mock_cpu": mock.cpu() - mock_cpu0, "rss_mib": delivery.vm_hwm(proc.pid) / 2**20,
                "requests": summary["requests"], "mib": summary["body_bytes"] / 2**20,
                "accepted": summary["accepted"]}
    finally:
        if proc is not None and proc.poll() is None:
            delivery.terminate(proc, 10)
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--shipper", default="syslog-ng,rsyslog", help="comma-separated: syslog-ng, rsyslog")
    ap.add_argument("--queue", default="memory,disk", help="comma-separated: memory, disk")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2000, help="events per bulk request")
    ap.add_argument("--workers", type=int, default=2, help="sending threads of the destination")
    args = ap.parse_args()
    print(f"C shippers -> lean ES mock: {args.events:,} hushd audit lines, batch {args.batch}, "
          f"{args.workers} workers, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for shipper in args.shipper.split(","):
        binary = SHIPPERS[shipper][0]()
        if binary is None:
            print(f"{shipper}: not installed (see this script's docstring)")
            continue
        for queue in args.queue.split(","):
            rates = []
            for _ in range(args.repeat):
                r = run_once(shipper, binary, args.events, queue, args.batch, args.workers)
                rates.append(r["rate"])
                print(f"{shipper:9} {queue:6} queue: {r['rate']:>9,.0f} events/s first request -> N-th "
                      f"event stored; CPU {r['cpu_100k']:.2f} s per 100k events; peak RSS "
                      f"{r['rss_mib']:.1f} MiB; {r['requests']} requests, {r['mib']:.1f} MiB, "
                      f"{r['accepted']:,} stored; mock CPU {r['mock_cpu']:.2f} s ({r['version']})")
            if len(rates) > 1:
                print(f"{shipper:9} {queue:6} median {statistics.median(rates):,.0f} events/s "
                      f"({min(rates):,.0f}-{max(rates):,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
