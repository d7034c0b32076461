"""Output ``file``: one event per line in the output's format (canonical JSON by default), rotated by size.

Delivery contract: a batch counts as delivered only after its bytes were written and (by default)
fsync'ed, because the drain framework advances the cursor right after; without the fsync a power loss
could lose events the spool already forgot. Rotation renames ``events.jsonl`` to ``events.jsonl.1``
(shifting older ones up to ``max_files``) before a write would exceed ``max_bytes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from agent.config_loader import doc
from agent.config_types import Size, parse_file_mode
from outputs.base import DeliveryItem, Outcome, Output, OutputConfig


@dataclass
class FileOutputConfig(OutputConfig):
    type: str = doc("Output type.", default="file")
    path: str = doc("File to append JSON lines to.", default="")
    max_bytes: Size = doc("Rotate before the file would grow past this; 0 never rotates.",
                          default=Size(100 * 1024 * 1024))
    max_files: int = doc("Rotated files kept (events.jsonl.1 ... .N).", default=5)
    fsync: bool = doc("fsync each batch before the cursor advances (survives power loss).",
                      default=True)
    mode: str = doc("File mode for new files, octal.", default="0640")

    def validate(self) -> None:
        super().validate()
        if not self.path:
            raise ValueError("path: required")
        if self.max_files < 0:
            raise ValueError("max_files: expected 0 or more")
        parse_file_mode(self.mode, "0640")


class FileOutput(Output):
    reads_events = False  # writes the canonical bytes as they are
    send_reads_events = False
    type_name = "file"
    config: FileOutputConfig

    def __init__(self, name: str, config: FileOutputConfig):
        super().__init__(name, config)
        self._fd: int | None = None
        self._size = 0
        self._dir_dirty = False  # a file created or renamed since the directory's last fsync

    def open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.config.path)), exist_ok=True)
        self._drop_torn_tail()
        self._reopen()

    def _drop_torn_tail(self) -> None:
        """A crash mid-write can leave a partial last line; its batch was never acknowledged and will
        be sent again, so cut the file back to its last complete line."""
        try:
            with open(self.config.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(max(0, size - 1))
                if f.read(1) == b"\n":
                    return
                pos = size
                while pos > 0:
                    step = min(65536, pos)
                    f.seek(pos - step)
                    chunk = f.read(step)
                    nl = chunk.rfind(b"\n")
                    if nl >= 0:
                        f.truncate(pos - step + nl + 1)
                        return
                    pos -= step
                f.truncate(0)
        except FileNotFoundError:
            return

    def _reopen(self) -> None:
        # Forget the descriptor before closing it: if the open below fails, a closed (and perhaps
        # reused) descriptor must not stay in self._fd for the next write or close.
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        path, mode = self.config.path, int(self.config.mode, 8)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
            created = True
        except FileExistsError:
            fd = os.open(path, flags | os.O_CREAT, mode)
            created = False
        try:
            if created:
                os.fchmod(fd, mode)  # the configured mode, not cut by the umask
                self._dir_dirty = True
            self._size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def _same_file(self) -> bool:
        """Whether ``path`` still names the open file: not removed, renamed or replaced by someone
        else (logrotate, an operator, a removed directory), whose writes would go to an unlinked or
        renamed inode."""
        assert self._fd is not None
        try:
            return os.path.samestat(os.stat(self.config.path), os.fstat(self._fd))
        except FileNotFoundError:
            return False

    def _sync_dir(self) -> None:
        """fsync the directory after a file was created or renamed there: without it the entry (and
        with it the fsync'ed lines) may be gone after a power loss."""
        fd = os.open(os.path.dirname(os.path.abspath(self.config.path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._dir_dirty = False

    def _rotate(self) -> None:
        path, keep = self.config.path, self.config.max_files
        if keep == 0:
            os.truncate(path, 0)
        else:
            # Shift up to the first free number only: after a rotation that failed at its last
            # rename (path -> .1) the retry must not shift the already shifted files once more,
            # which dropped one more of them than max_files allows.
            free = next((i for i in range(1, keep) if not os.path.exists(f"{path}.{i}")), keep)
            for i in range(free - 1, 0, -1):
                os.replace(f"{path}.{i}", f"{path}.{i + 1}")
            os.replace(path, f"{path}.1")
            self._dir_dirty = True
        self._reopen()

    def send(self, batch: list[DeliveryItem], packed: None = None) -> Outcome:
        """``packed`` is never given: this output has no ``packer()``, its items keep their bytes."""
        data = b"".join((item.data or item.body) + b"\n" for item in batch)
        try:
            # In a thread: a write or fsync that blocks (a slow disk, a full one's retries) must not
            # stop the loop, and with it every other output and input.
            from spool.store import run_in_pool  # here: the mapping helper imports this module
            run_in_pool(self._append, data)
        except OSError as exc:
            # Disk full, permissions, a vanished directory: all may heal; the spool keeps the batch.
            self.close()
            return Outcome.retry(f"write failed: {exc.strerror or exc}")
        return Outcome.delivered()

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end of the file (rotating first when it would grow past
        ``max_bytes``), fsync'ed as configured."""
        if self._fd is not None and not self._same_file():
            self.close()
        if self._fd is None:
            self.open()
        limit = self.config.max_bytes
        if limit and self._size and self._size + len(data) > limit:
            self._rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
        if self.config.fsync:
            os.fsync(self._fd)
            if self._dir_dirty:
                self._sync_dir()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
