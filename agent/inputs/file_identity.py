"""File identity for the tailer: ``native::<dev>-<ino>`` plus a content marker.

The key names the inode (Filebeat's ``native`` scheme). Because inodes are reused, the offset stored
with a key is trusted only if the file still starts with the same bytes: the marker is the SHA-256 of the
first ``min(size, 1024)`` bytes, stored with its length (Fluent Bit's offset marker, Filebeat's
fingerprint size). A stored offset is used only when the key matches, the first ``marker_len`` bytes
still hash the same, and ``offset <= size``; otherwise the file is read from 0 (the spool's
``INSERT OR IGNORE`` on ``event_id`` absorbs what was already read).
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

MARKER_BYTES = 1024


def file_key(st: os.stat_result) -> str:
    return f"native::{st.st_dev}-{st.st_ino}"


def read_prefix(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.pread(fd, n - len(out), len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


class Marker(NamedTuple):
    digest: bytes   # SHA-256 of the first `length` bytes
    length: int


def compute_marker(fd: int, size: int) -> Marker:
    n = min(size, MARKER_BYTES)
    data = read_prefix(fd, n)
    return Marker(hashlib.sha256(data).digest(), len(data))


def marker_matches(fd: int, marker: bytes | None, marker_len: int) -> bool:
    """Whether the file still starts with the bytes the marker was computed from."""
    if marker is None:
        return marker_len == 0
    data = read_prefix(fd, marker_len)
    return len(data) == marker_len and hashlib.sha256(data).digest() == marker


def trusted_offset(fd: int, size: int, offset: int, marker: bytes | None, marker_len: int) -> bool:
    """Whether a stored ``offset`` (for this file's key) may be resumed from."""
    if offset < 0 or offset > size:
        return False
    if offset == 0:
        return True
    if marker_len <= 0 or marker is None:
        return False  # an offset without a marker cannot be checked
    # Every offset the tailer stores is just past a newline, but for the end of an unterminated last
    # line taken as a line when a rotated or deleted file was closed. A file that reuses that inode and
    # merely starts with those bytes (as every JSON line starts with '{"') must not be read from there:
    # its first line would be cut and its event lost.
    if os.pread(fd, 1, offset - 1) != b"\n":
        return False
    return marker_matches(fd, marker, marker_len)
