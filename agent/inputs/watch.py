"""inotify <-> gevent: file change events wake tailer greenlets sooner.

On Linux the gevent loop reads inotify itself (``_InotifyWatches``): watchdog's binding of the system
calls (``watchdog.observers.inotify_c``: ``inotify_init``, ``inotify_add_watch``, ``inotify_rm_watch``
and its parser of ``struct inotify_event``) on a non-blocking descriptor that a loop io watcher waits
on. An append then costs one read in the hub and no thread at all. watchdog's ``Observer`` runs three
OS threads and two queues per event, which at 50 appends a second cost ~40% of the agent's CPU (GIL
and futex hand-offs between those threads and the loop) and whose only output here was "this path
changed".

Elsewhere (no inotify), or if inotify cannot be set up, watchdog's ``Observer`` does the watching.
The agent calls ``gevent.monkey.patch_all()`` before anything else, so a plain ``import watchdog``
would build watchdog on gevent's ``threading``/``queue``/``select``: its "threads" would be greenlets,
its inotify read would run on the gevent loop, and its queue (a subclass of ``queue.Queue``, which gevent
replaces) breaks outright. Instead this module loads a *private copy* of watchdog against the original,
unpatched stdlib (``gevent.monkey.saved`` holds the originals; ``threading`` and ``queue`` are re-executed
from source against them). Its observer, emitter and inotify threads are then real OS threads that block
in ``poll``/``read`` on the inotify fd without touching the gevent loop. The only thing those threads do
to the gevent side is ``async_watcher.send()`` (libev/libuv async watchers are the documented
thread-safe way to wake a loop) after appending the changed directory to a ``collections.deque``
(thread-safe append/popleft). The async callback runs in the hub and only sets gevent ``Event``s.
Coalesced sends are fine: a woken tailer reads every file to EOF.

Either way the watch only lowers latency; the periodic stat scan of the tailer stays the truth (a
missed or overflowed inotify queue costs at most one scan interval, and an overflow causes a scan).
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import importlib.util
import logging
import os
import stat
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import gevent

log = logging.getLogger(__name__)


class _EmitterStopRace(logging.Filter):
    """watchdog 7 logs "InotifyEmitter.queue_events() called when the thread is inactive" at ERROR
    when an emitter is stopped while its thread is reading (``queue_events`` in
    watchdog/observers/inotify.py): a race of its own stop, which every agent shutdown and every
    unschedule of a directory can hit, not a fault. An operator must not see an error on a clean
    stop: that message is dropped, and every other watchdog message passes."""

    MESSAGE = "InotifyEmitter.queue_events() called when the thread is inactive"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.MESSAGE


logging.getLogger("watchdog.observers.inotify").addFilter(_EmitterStopRace())

_watchdog: tuple[Any, Any] | None = None
_load_lock = threading.Lock()

#: After a read that returned events, watchdog's inotify thread waits this long before it reads again,
#: so the kernel merges the IN_MODIFY events of a file appended to meanwhile into one (inotify(7):
#: "If successive output inotify events produced on the inotify file descriptor are identical (same
#: wd, mask, cookie, and name), then they are coalesced into a single event if the older event has
#: not yet been read"). Each event crosses three watchdog threads and their queues: at 2,000 appends
#: a second that cost ~150 us of CPU per append, ~0.3 of a core, and with 2 ms it is ~40 us. Events
#: already read are handled at once; a write during the wait wakes its reader at most this much later,
#: and the first write after a quiet spell not later at all.
COALESCE_S = 0.002


def _coalesce_reads(inotify_fd_cls: Any, delay: float, sleep: Callable[[float], None]) -> None:
    """Make ``inotify_fd_cls.read_events`` (watchdog's inotify reader) wait ``delay`` before a read
    that follows one which returned events (see ``COALESCE_S``)."""
    read = inotify_fd_cls.read_events
    if getattr(read, "coalescing", False):
        return

    def read_events(self: Any, **kw: Any) -> Any:
        if getattr(self, "_clawd_busy", False):
            sleep(delay)
        events = read(self, **kw)
        self._clawd_busy = bool(events)
        return events

    read_events.coalescing = True  # type: ignore[attr-defined]
    inotify_fd_cls.read_events = read_events


def _coalesce(sleep: Callable[[float], None]) -> None:
    """``_coalesce_reads`` on the watchdog just imported (Linux inotify only)."""
    inotify_c = sys.modules.get("watchdog.observers.inotify_c")
    cls = getattr(inotify_c, "InotifyFD", None)
    if cls is not None and hasattr(cls, "read_events"):
        _coalesce_reads(cls, COALESCE_S, sleep)
    else:
        log.debug("watchdog has no inotify reader to coalesce (not Linux, or a new watchdog)")


def _load_watchdog_unpatched() -> tuple[Any, Any]:
    """(watchdog.observers.inotify-or-polling Observer class, watchdog.events module), built on the
    original stdlib when gevent has monkey-patched it."""
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        import time

        import watchdog.events as events
        from watchdog.observers import Observer

        _coalesce(time.sleep)
        return Observer, events

    saved = monkey.saved

    def shim(name: str) -> types.ModuleType:
        real = importlib.import_module(name)
        mod = types.ModuleType(name)
        mod.__dict__.update(real.__dict__)
        mod.__dict__.update(saved.get(name, {}))
        return mod

    def fresh(name: str) -> types.ModuleType:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    swapped = ("_thread", "threading", "queue", "select", "selectors", "time", "os")
    old = {n: sys.modules.get(n) for n in swapped}
    is_wd = lambda k: k == "watchdog" or k.startswith("watchdog.")  # noqa: E731
    old_wd = {k: v for k, v in sys.modules.items() if is_wd(k)}
    try:
        for k in old_wd:
            del sys.modules[k]
        for n in ("_thread", "select", "time", "os"):
            sys.modules[n] = shim(n)
        fresh("threading")
        fresh("queue")
        sys.modules.pop("selectors", None)
        fresh("selectors")
        import watchdog.events as events
        from watchdog.observers import Observer

        _coalesce(monkey.get_original("time", "sleep"))  # a real sleep: it runs in watchdog's thread
        return Observer, events
    finally:
        for k in [k for k in sys.modules if is_wd(k)]:
            del sys.modules[k]
        sys.modules.update(old_wd)
        for n, m in old.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _watchdog_api() -> tuple[Any, Any]:
    global _watchdog
    with _load_lock:
        if _watchdog is None:
            _watchdog = _load_watchdog_unpatched()
        return _watchdog


class _Observer:
    """The process-wide watchdog observer (real OS threads) with reference-counted directory watches."""

    def __init__(self) -> None:
        observer_cls, self.events = _watchdog_api()
        self._observer_cls = observer_cls
        self.observer: Any = None
        self.watches: dict[tuple[str, int], Any] = {}  # (dir, id(handler)) -> ObservedWatch

    def schedule(self, directory: str, handler: Any) -> Any:
        if self.observer is None or not self.observer.is_alive():
            self.observer = self._observer_cls()
            self.observer.daemon = True
            self.observer.start()
        watch = self.observer.schedule(handler, directory, recursive=False)
        self.watches[(directory, id(handler))] = watch
        return watch

    def unschedule(self, directory: str, handler: Any) -> None:
        watch = self.watches.pop((directory, id(handler)), None)
        if watch is None or self.observer is None:
            return
        try:
            self.observer.remove_handler_for_watch(handler, watch)
            if not any(w == watch for w in self.watches.values()):
                self.observer.unschedule(watch)
        except Exception:  # the directory may be gone already
            log.debug("unschedule %s failed", directory, exc_info=True)
        if not self.watches:
            self.stop()

    def stop(self) -> None:
        obs, self.observer = self.observer, None
        if obs is None:
            return
        obs.stop()
        # join without blocking the gevent loop: the threads exit within the observer timeout
        deadline = 50
        while obs.is_alive() and deadline:
            gevent.sleep(0.05)
            deadline -= 1


_shared: _Observer | None = None


def _observer() -> _Observer:
    global _shared
    if _shared is None:
        _shared = _Observer()
    return _shared


#: watchdog event types that only say a file's content (or its open state) changed: no file came,
#: went or moved, so the set of files a glob matches is the same. watchdog also reports "modified" for
#: the directory of every written file; a file that came, went or moved has its own created/deleted/
#: moved event, which still causes a scan.
_CONTENT_EVENTS = frozenset({"modified", "opened", "closed", "closed_no_write"})


def _inotify_api() -> Any:
    """watchdog's inotify binding (``watchdog.observers.inotify_c``), or None where there is none.
    Only its system-call wrappers, constants and event parser are used: nothing of it runs a thread."""
    try:
        from watchdog.observers import inotify_c
    except Exception:  # not Linux, or a libc without inotify (watchdog raises UnsupportedLibcError)
        return None
    return inotify_c


#: Set False to watch through watchdog's Observer even where inotify is available (tests).
INOTIFY = True


class _InotifyWatches:
    """Directory watches read by the gevent loop: an io watcher on a non-blocking inotify descriptor.

    ``on_events(changes)`` is called in the hub with ``{path: structural}``: structural when a file came,
    went or moved (``IN_CREATE``, ``IN_DELETE``, ``IN_MOVED_FROM``/``IN_MOVED_TO``), or the watched
    directory itself did (its own path), or the kernel's queue overflowed (every watched directory:
    the caller scans); otherwise only a file's content changed (``IN_MODIFY``). After a read that
    returned events the descriptor is left unwatched for ``COALESCE_S``, so the kernel merges the
    identical ``IN_MODIFY`` events of a file appended to meanwhile into one (inotify(7)); the first
    write after a quiet spell is read at once."""

    def __init__(self, api: Any, on_events: Callable[[dict[str, bool]], None]) -> None:
        c = api.InotifyConstants
        self._api = api
        self._structural = c.IN_CREATE | c.IN_DELETE | c.IN_MOVED_FROM | c.IN_MOVED_TO
        self._self_gone = c.IN_DELETE_SELF | c.IN_MOVE_SELF
        self._moved_self = c.IN_MOVE_SELF
        self._mask = c.IN_MODIFY | self._structural | self._self_gone
        self._ignored, self._overflow = c.IN_IGNORED, c.IN_Q_OVERFLOW
        self._on_events = on_events
        fd = api.inotify_init()
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # the mapping helper is spawned: it must not hold our watches
        self.fd = fd
        loop = gevent.get_hub().loop
        self._io = loop.io(fd, 1)
        self._io.ref = False
        self._timer = loop.timer(COALESCE_S)
        self._timer.ref = False
        # watch descriptor -> the directories it watches: two names of one directory (a symlink and its
        # target) get the same descriptor from the kernel, and each name's paths are reported
        self._dirs: dict[int, list[str]] = {}
        self._wds: dict[str, int] = {}
        self.events_seen = 0
        self._io.start(self._readable)

    def add(self, directory: str) -> None:
        wd = self._api.inotify_add_watch(self.fd, os.fsencode(directory), self._mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch: {os.strerror(err)}")
        names = self._dirs.setdefault(wd, [])
        if directory not in names:
            names.append(directory)
        self._wds[directory] = wd

    def remove(self, directory: str) -> None:
        wd = self._wds.pop(directory, None)
        names = self._dirs.get(wd, []) if wd is not None else []
        if directory in names:
            names.remove(directory)
            if not names:
                del self._dirs[wd]
                self._api.inotify_rm_watch(self.fd, wd)  # fails (EINVAL) only for a watch already gone

    def _readable(self) -> None:  # in the hub: must not block (the descriptor is non-blocking)
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:  # closed under us
                return
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return
        changes = self._changes(b"".join(chunks))
        self._io.stop()  # let the kernel merge what comes in the next COALESCE_S
        self._timer.start(self._rearm)
        if changes:
            try:
                self._on_events(changes)
            except Exception:
                log.exception("watch wake-up callback failed")

    def _rearm(self) -> None:
        self._io.start(self._readable)

    def _changes(self, buffer: bytes) -> dict[str, bool]:
        changes: dict[str, bool] = {}
        dirs = self._dirs
        for wd, mask, _cookie, name in self._api.InotifyFD._parse_event_buffer(buffer):
            self.events_seen += 1
            if mask & self._overflow:
                log.warning("inotify queue overflowed; the tailer scans every watched directory")
                # The lost events may include a watch's IN_IGNORED (its directory deleted or replaced
                # meanwhile): drop every watch; the scan this causes watches the directories again.
                for wd, names in list(dirs.items()):
                    changes.update(dict.fromkeys(names, True))
                    self._forget(wd)
                    self._api.inotify_rm_watch(self.fd, wd)
                continue
            names = dirs.get(wd)
            if names is None:
                continue
            if mask & self._ignored:  # the watch is gone (directory deleted, moved or unmounted)
                self._forget(wd)
                changes.update(dict.fromkeys(names, True))
                continue
            structural = bool(mask & (self._self_gone if not name else self._structural))
            if not name and mask & self._moved_self:
                # Renamed: the kernel keeps watching it under its new name, which we do not know,
                # so its events would carry the old name. Drop the watch; the scan this causes
                # watches whatever directory is at the old path now.
                self._forget(wd)
                self._api.inotify_rm_watch(self.fd, wd)
            for directory in names:
                path = os.path.join(directory, os.fsdecode(name)) if name else directory
                changes[path] = changes.get(path, False) or structural
        return changes

    def _forget(self, wd: int) -> None:
        """Drop watch descriptor ``wd`` and the directory names it stood for."""
        for directory in self._dirs.pop(wd, []):
            if self._wds.get(directory) == wd:
                del self._wds[directory]

    @property
    def directories(self) -> frozenset[str]:
        return frozenset(self._wds)

    def close(self) -> None:
        self._io.stop()
        self._io.close()
        self._timer.stop()
        self._timer.close()
        self._dirs.clear()
        self._wds.clear()
        os.close(self.fd)  # drops every watch


class _ObserverWatches:
    """Directory watches through watchdog's Observer (real OS threads), waking the hub with an async
    watcher; ``on_events`` as ``_InotifyWatches``'s."""

    def __init__(self, on_events: Callable[[dict[str, bool]], None]) -> None:
        self._on_events = on_events
        self._pending: collections.deque[tuple[str, bool]] = collections.deque()
        self._async = gevent.get_hub().loop.async_()
        self._async.ref = False
        self._async.start(self._drain)
        self._dirs: set[str] = set()
        self.events_seen = 0      # watchdog events received (in the watchdog thread)
        obs = _observer()
        bridge = self

        class _Handler(obs.events.FileSystemEventHandler):
            # runs in watchdog's dispatcher OS thread: touch nothing gevent but async.send()
            def on_any_event(self, event: Any) -> None:
                bridge.events_seen += 1
                structural = event.event_type not in _CONTENT_EVENTS
                for p in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
                    if p:
                        bridge._pending.append((os.fsdecode(p), structural))
                bridge._async.send()

        self._handler = _Handler()

    def _drain(self) -> None:  # in the hub: must not block
        changes: dict[str, bool] = {}
        while self._pending:
            path, structural = self._pending.popleft()
            changes[path] = changes.get(path, False) or structural
        if not changes:  # an earlier wake-up took these events (async sends coalesce)
            return
        try:
            self._on_events(changes)
        except Exception:
            log.exception("watch wake-up callback failed")

    def add(self, directory: str) -> None:
        _observer().schedule(directory, self._handler)
        self._dirs.add(directory)

    def remove(self, directory: str) -> None:
        if directory in self._dirs:
            self._dirs.discard(directory)
            _observer().unschedule(directory, self._handler)

    @property
    def directories(self) -> frozenset[str]:
        return frozenset(self._dirs)

    def close(self) -> None:
        for d in list(self._dirs):
            self.remove(d)
        self._async.stop()
        self._async.close()


def _identity(directory: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory at ``directory`` (symlinks followed), None if there is none."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class DirectoryWatcher:
    """Calls ``on_change(changes)`` in the gevent hub with what changed in the watched directories since
    the last call: ``{path: structural}``, where structural means the path came, went or moved (a glob
    may match other files now) and not structural means only its content or open state changed (its
    reader, if any, has more to read). The caller decides what each needs, so an append wakes one
    reader instead of re-scanning globs. Create, use and close it from the gevent thread that owns the
    tailer. ``backend`` is ``"inotify"`` (Linux: read by the loop) or ``"watchdog"`` (Observer threads).

    A watched directory deleted while a file in it is still open (a draining reader's, a writer's)
    sends no ``IN_DELETE_SELF`` until the last one is closed: the kernel reports only its files'
    ``IN_DELETE``. A change reported in a watched directory that is no longer the one at its path
    (``(st_dev, st_ino)`` as when it was watched) therefore reports the directory too, as structural."""

    def __init__(self, on_change: Callable[[dict[str, bool]], None]) -> None:
        self._on_change = on_change
        # watched directory -> its identity when watched; None: watch it again at the next scan
        self._ids: dict[str, tuple[int, int] | None] = {}
        self.wakeups = 0          # callbacks run (for tests and stats)
        api = _inotify_api() if INOTIFY else None
        self._watches: _InotifyWatches | _ObserverWatches | None = None
        if api is not None:
            try:
                self._watches = _InotifyWatches(api, self._deliver)
                self.backend = "inotify"
            except OSError as exc:  # e.g. fs.inotify.max_user_instances reached
                log.warning("inotify unavailable (%s); watching through watchdog's observer", exc)
        if self._watches is None:
            self._watches = _ObserverWatches(self._deliver)
            self.backend = "watchdog"

    def _deliver(self, changes: dict[str, bool]) -> None:
        ids = self._ids
        parents = set()
        for path, structural in changes.items():
            if structural:
                parents.add(os.path.dirname(path))
                if path in ids:  # a watched directory itself went or moved: the next scan watches
                    ids[path] = None  # what is at the path now (watchdog stops its emitter)
        for d in parents:
            if ids.get(d) is not None and _identity(d) != ids[d]:
                ids[d] = None  # deleted or replaced, and its watch not dropped (see the class)
                changes[d] = True
        self.wakeups += 1
        self._on_change(changes)

    @property
    def events_seen(self) -> int:
        return self._watches.events_seen if self._watches is not None else 0

    @property
    def directories(self) -> frozenset[str]:
        return self._watches.directories if self._watches is not None else frozenset()

    def set_directories(self, wanted: set[str]) -> None:
        """Watch exactly the existing directories of ``wanted`` (missing ones are retried by the caller's
        next scan; so is a watched directory that was deleted, renamed or replaced: its watch is
        dropped, and the directory now at its path, if any, is watched). Each watched directory's
        identity is checked here, as the event that would have dropped its watch may never come:
        the kernel sends none while a file in it is open, an overflowed queue loses it, and
        watchdog's Observer stops the directory's emitter without telling us."""
        watches = self._watches
        if watches is None:
            return
        ids = self._ids
        for d in watches.directories:
            ident = _identity(d)
            if d not in wanted or ident is None or ident != ids.get(d):
                watches.remove(d)
        for d in set(ids) - watches.directories:
            del ids[d]
        have = watches.directories
        for d in wanted - have:
            ident = _identity(d)
            if ident is None:
                continue
            try:
                watches.add(d)
                ids[d] = ident
            except OSError as exc:
                log.warning("cannot watch %s (%s); the stat scan still covers it", d, exc)

    def close(self) -> None:
        watches, self._watches = self._watches, None
        if watches is not None:
            watches.close()
