"""End-to-end throughput of the real agent: hushd audit file -> spool, and file -> spool -> file output.
Prints figures; asserts nothing.

    .venv/bin/python bench/ingest.py [--events 200000] [--durability full] [--profile]

Runs (each a fresh temp dir and a real ``python -m agent run`` process):

1. ingest: one file input, the only output disabled; the spool is polled read-only
   (``SELECT max(seq) FROM events``) until every event is in. Events/s are given from process start to
   all ingested, and from the first spooled row to the last (excludes interpreter/agent startup).
2. e2e: the same with an enabled file output (fsync on, defaults otherwise); timed until the output's
   cursor reaches N.

Peak RSS is the agent process's VmHWM (read from /proc just before SIGTERM), cross-checked by psutil
polling every 50 ms.

``--profile`` runs the ingest part in this process instead (gevent monkey-patched, ``Supervisor`` as
``agent/demo.py`` does) under cProfile, and prints the top functions by cumulative and by own time, for
the hub thread and, separately, for the threadpool where the spool's transactions run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.harness import audit_line  # noqa: E402

DEFAULT_EVENTS = 200_000
POLL_S = 0.02
TIMEOUT_S = 600.0


def write_input(tmp: Path, n: int) -> Path:
    (tmp / "in").mkdir(parents=True, exist_ok=True)
    path = tmp / "in" / "audit.jsonl"
    with open(path, "wb") as f:
        chunk: list[bytes] = []
        for i in range(n):
            chunk.append(audit_line(i))
            if len(chunk) == 10_000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    return path


def write_config(tmp: Path, *, durability: str, output_enabled: bool, offload: bool = True) -> Path:
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[agent]
data_dir = "{tmp}/state"
log_format = "json"
offload = {"true" if offload else "false"}

[spool]
durability = "{durability}"

[metrics]
listen = "127.0.0.1:0"

[inputs.audit]
type = "file"
paths = ["{tmp}/in/*.jsonl"]

[outputs.archive]
type = "file"
path = "{tmp}/out/events.jsonl"
max_bytes = 0
enabled = {"true" if output_enabled else "false"}
""")
    return cfg


class RssPoller(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        try:
            import psutil

            p = psutil.Process(self.pid)
            while not self._done.is_set():
                self.peak = max(self.peak, p.memory_info().rss)
                self._done.wait(0.05)
        except Exception:
            pass

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=1)
        return self.peak


def proc_kib(pid: int, key: str, file: str = "status") -> int:
    """The ``key: <n> kB`` line of ``/proc/<pid>/<file>``, in bytes (0 once the process is gone)."""
    prefix = key + ":"
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(prefix):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vm_hwm(pid: int) -> int:
    """Peak resident set size of the process so far."""
    return proc_kib(pid, "VmHWM")


def query(db: Path, sql: str, args: tuple = ()) -> int | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute(sql, args).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def run_process(n: int, *, durability: str, e2e: bool, offload: bool = True) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="clawd-bench-"))
    try:
        write_input(tmp, n)
        cfg = write_config(tmp, durability=durability, output_enabled=e2e, offload=offload)
        db = tmp / "state" / "spool.db"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = open(tmp / "agent.log", "wb")  # noqa: SIM115 - closed below
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)],
                                cwd=ROOT, env=env, stdout=log, stderr=log)
        rss = RssPoller(proc.pid)
        rss.start()
        t_first = t_all = t_out = None
        deadline = t0 + TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited with {proc.returncode}; see {tmp}/agent.log")
            now = time.monotonic()
            if t_all is None:
                top = query(db, "SELECT max(seq) FROM events")
                if top and t_first is None:
                    t_first = now
                if top is not None and top >= n:
                    t_all = now
            if t_all is not None:
                if not e2e:
                    break
                cur = query(db, "SELECT seq FROM cursors WHERE output = ?", ("archive",))
                if cur is not None and cur >= n:
                    t_out = now
                    break
            time.sleep(POLL_S)
        hwm = vm_hwm(proc.pid)
        peak_polled = rss.stop()
        terminate(proc, 30)
        log.close()
        if t_all is None or (e2e and t_out is None):
            raise RuntimeError(f"timed out after {TIMEOUT_S}s; see {tmp}/agent.log")
        res = {
            "total_s": t_all - t0,
            "rate": n / (t_all - t0),
            "ingest_s": t_all - (t_first or t0),
            "ingest_rate": n / max(t_all - (t_first or t0), 1e-9),
            "startup_s": (t_first or t0) - t0,
            "rss_mib": max(hwm, peak_polled) / 2**20,
            "rss_hwm_mib": hwm / 2**20,
            "rss_polled_mib": peak_polled / 2**20,
            "spool_mib": db.stat().st_size / 2**20 + (
                Path(str(db) + "-wal").stat().st_size / 2**20 if Path(str(db) + "-wal").exists() else 0),
        }
        if e2e:
            assert t_out is not None
            res["e2e_s"] = t_out - t0
            res["e2e_rate"] = n / (t_out - t0)
            res["e2e_from_first_rate"] = n / max(t_out - (t_first or t0), 1e-9)
            out = tmp / "out" / "events.jsonl"
            res["out_lines"] = out.read_bytes().count(b"\n") if out.exists() else 0
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_profile(n: int, durability: str, top: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    import cProfile
    import pstats

    import gevent

    import spool.store as store
    from agent.config import load_config
    from agent.logs import setup_logging
    from agent.supervisor import Supervisor

    tmp = Path(tempfile.mkdtemp(prefix="clawd-bench-prof-"))
    try:
        write_input(tmp, n)
        cfg = load_config(write_config(tmp, durability=durability, output_enabled=False))
        setup_logging("warning", cfg.agent.log_format)

        # The spool's write transactions run in gevent's threadpool, which the hub thread's profiler
        # cannot see: profile each offloaded call on its own and merge the results afterwards.
        pool_profiles: list[cProfile.Profile] = []
        lock = threading.Lock()
        orig_capture = store._capture

        def profiled_capture(fn, args):  # type: ignore[no-untyped-def]
            p = cProfile.Profile()
            p.enable()
            try:
                return orig_capture(fn, args)
            finally:
                p.disable()
                with lock:
                    pool_profiles.append(p)

        store._capture = profiled_capture  # type: ignore[assignment]
        prof = cProfile.Profile()
        t0 = time.monotonic()
        prof.enable()
        sup = Supervisor(cfg)
        sup.start()
        t_first = None
        while time.monotonic() - t0 < TIMEOUT_S:
            last = sup.spool.last_seq()
            if last and t_first is None:
                t_first = time.monotonic()
            if last >= n:
                break
            gevent.sleep(POLL_S)
        t_all = time.monotonic()
        prof.disable()
        sup.shutdown()
        store._capture = orig_capture
        wall = t_all - t0
        print(f"profile ({durability}): {n} events in {wall:.2f}s = {n / wall:,.0f} events/s under cProfile "
              f"({n / max(t_all - (t_first or t0), 1e-9):,.0f}/s from first row)")
        print(f"\n== hub thread (greenlets; includes idle waits in the hub), wall {wall:.2f}s: "
              f"top {top} by cumulative ==")
        st = pstats.Stats(prof)
        st.sort_stats("cumulative").print_stats(top)
        print(f"== hub thread: top {top} by own time ==")
        st.sort_stats("tottime").print_stats(top)
        if pool_profiles:
            pst = pstats.Stats(pool_profiles[0])
            for p in pool_profiles[1:]:
                pst.add(p)
            print(f"== threadpool (spool transactions, {len(pool_profiles)} calls): "
                  f"top {top} by cumulative ==")
            pst.sort_stats("cumulative").print_stats(top)
            print(f"== threadpool: top {top} by own time ==")
            pst.sort_stats("tottime").print_stats(top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def interpreter() -> str:
    """The Python the agent runs on, as the figures depend on it: its version, path, and whether
    libpython is a shared library (a source build's ``--enable-shared``, pyenv's default, which with no
    ``--enable-optimizations``/``--with-lto`` costs ~10% more CPU per event than Debian's
    /usr/bin/python3.11, whose libpython is linked in and built with PGO and LTO)."""
    with open("/proc/self/maps") as f:
        shared = any("libpython" in line for line in f)
    flags = sysconfig.get_config_var("CONFIG_ARGS") or ""
    built = [name for name in ("--enable-optimizations", "--with-lto") if name in flags]
    return (f"python {sys.version.split()[0]} ({os.path.realpath(sys.executable)}, "
            f"libpython {'shared' if shared else 'linked in'}"
            + (f", {' '.join(built)}" if built else "") + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    ap.add_argument("--durability", default="full", choices=["off", "normal", "full", "extra"])
    ap.add_argument("--profile", action="store_true", help="profile the ingest part in-process instead")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-offload", action="store_true",
                    help="[agent] offload = false: map in the agent's own loop (no helper process)")
    args = ap.parse_args()
    n = args.events
    if args.profile:
        run_profile(n, args.durability, args.top)
        return
    print(f"clawd-agent bench: {n:,} hushd audit lines, durability={args.durability}, "
          f"{os.cpu_count()} CPUs, {interpreter()}")
    offload = not args.no_offload
    print(f"offload helper: {'on' if offload else 'off'}")
    r = run_process(n, durability=args.durability, e2e=False, offload=offload)
    w = "events/s"
    print(f"ingest  file -> spool          : {r['rate']:>9,.0f} {w}  ({r['total_s']:.2f}s from process "
          f"start, startup {r['startup_s']:.2f}s)")
    print(f"        excluding startup      : {r['ingest_rate']:>9,.0f} {w}  ({r['ingest_s']:.2f}s first "
          f"row -> last)")
    print(f"        peak RSS               : {r['rss_mib']:>9.1f} MiB  (VmHWM {r['rss_hwm_mib']:.1f}, "
          f"polled {r['rss_polled_mib']:.1f}); spool {r['spool_mib']:.0f} MiB")
    e = run_process(n, durability=args.durability, e2e=True, offload=offload)
    print(f"e2e     file -> spool -> file  : {e['e2e_rate']:>9,.0f} {w}  ({e['e2e_s']:.2f}s from process "
          f"start to output cursor = N; {e['out_lines']:,} lines written)")
    print(f"        excluding startup      : {e['e2e_from_first_rate']:>9,.0f} {w}")
    print(f"        ingest during e2e      : {e['rate']:>9,.0f} {w}  ({e['ingest_rate']:,.0f}/s excl. "
          f"startup)")
    print(f"        peak RSS               : {e['rss_mib']:>9.1f} MiB  (VmHWM {e['rss_hwm_mib']:.1f}, "
          f"polled {e['rss_polled_mib']:.1f})")

if __name__ == "__main__":
    main()
