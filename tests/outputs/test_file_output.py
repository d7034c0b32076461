import os

from outputs.base import DeliveryItem, Status
from outputs.file import FileOutput, FileOutputConfig


def items(start, n, size=10):
    return [DeliveryItem(i, {}, (b'{"n":%d' % i).ljust(size, b" ") + b"}") for i in range(start, start + n)]


def test_appends_json_lines(tmp_path):
    out = FileOutput("f", FileOutputConfig(path=str(tmp_path / "o" / "e.jsonl")))
    out.open()
    assert out.send(items(1, 3)).status is Status.DELIVERED
    assert out.send(items(4, 2)).status is Status.DELIVERED
    out.close()
    lines = (tmp_path / "o" / "e.jsonl").read_bytes().splitlines()
    assert [int(x[5:].split(b" ")[0].rstrip(b"}")) for x in lines] == [1, 2, 3, 4, 5]


def test_rotates_by_size_and_keeps_max_files(tmp_path):
    path = tmp_path / "e.jsonl"
    out = FileOutput("f", FileOutputConfig(path=str(path), max_bytes=100, max_files=2, fsync=False))
    out.open()
    for k in range(6):
        assert out.send(items(k * 4, 4, size=20)).status is Status.DELIVERED  # 4 x 22 bytes per batch
    out.close()
    assert sorted(os.listdir(tmp_path)) == ["e.jsonl", "e.jsonl.1", "e.jsonl.2"]
    for name in ("e.jsonl", "e.jsonl.1", "e.jsonl.2"):
        assert len((tmp_path / name).read_bytes()) <= 100
    newest = (tmp_path / "e.jsonl").read_bytes().splitlines()
    assert newest[-1].startswith(b'{"n":23')


def test_write_failure_is_retryable(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    out = FileOutput("f", FileOutputConfig(path=str(blocker / "e.jsonl")))
    outcome = out.send(items(1, 1))
    assert outcome.status is Status.RETRY
    assert "write failed" in outcome.reason


def test_a_torn_last_line_from_a_crash_is_cut_on_open(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3, "trunc')
    out = FileOutput("f", FileOutputConfig(path=str(path)))
    out.open()
    out.send(items(3, 1))
    out.close()
    lines = path.read_bytes().splitlines()
    assert lines[:2] == [b'{"n":1}', b'{"n":2}']
    assert lines[2].startswith(b'{"n":3') and len(lines) == 3


def test_stdout_and_file_writes_run_off_the_loop_thread(tmp_path, monkeypatch):
    """A stalled reader of stdout (a pipe nobody drains) or a slow disk blocks ``write``/``fsync``:
    both outputs make those calls in gevent's threadpool, never in the loop's thread, so every other
    output and input goes on meanwhile."""
    import io
    import sys

    from gevent import monkey

    from outputs.stdout import StdoutOutput, StdoutOutputConfig

    get_ident = monkey.get_original("threading", "get_ident")
    loop_thread = get_ident()
    real_write, real_fsync = os.write, os.fsync
    calls: list[tuple[str, bool]] = []

    def write(fd, data):
        calls.append(("write", get_ident() == loop_thread))
        return real_write(fd, data)

    def fsync(fd):
        calls.append(("fsync", get_ident() == loop_thread))
        return real_fsync(fd)

    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.FileIO(write_end, "w", closefd=False)))
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    try:
        assert StdoutOutput("out", StdoutOutputConfig()).send(items(0, 3)).status is Status.DELIVERED
        out = FileOutput("f", FileOutputConfig(path=str(tmp_path / "e.jsonl")))
        assert out.send(items(3, 3)).status is Status.DELIVERED
        out.close()
    finally:
        monkeypatch.undo()
        got = os.read(read_end, 1 << 16)
        os.close(read_end)
        os.close(write_end)
    assert got.count(b"\n") == 3
    assert {name for name, _ in calls} == {"write", "fsync"}
    assert not any(in_loop for _, in_loop in calls), calls
