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


def test_a_stalled_stdout_reader_does_not_stop_the_loop(monkeypatch):
    """stdout is a pipe nobody reads: the write blocks, in a thread; the loop (every other output
    and input) goes on, and the batch is delivered once the reader drains the pipe."""
    import io
    import sys

    import gevent

    from outputs.stdout import StdoutOutput, StdoutOutputConfig

    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.FileIO(write_end, "w", closefd=False)))
    out = StdoutOutput("out", StdoutOutputConfig())
    batch = [DeliveryItem(i, {}, b"x" * 4096) for i in range(64)]  # 256 KiB: beyond a pipe's 64 KiB
    got: list[bytes] = []
    ticked = []

    def rescue() -> None:  # a real thread: if the write blocks the loop, unblock it after a while
        import time
        deadline = time.monotonic() + 20
        while not ticked and time.monotonic() < deadline:
            time.sleep(0.05)
        while not ticked and sum(map(len, got)) < 64 * 4097:
            got.append(os.read(read_end, 1 << 20))

    rescuer = gevent.get_hub().threadpool.spawn(rescue)
    sending = gevent.spawn(out.send, batch)
    for _ in range(5):  # the loop runs while the write is blocked
        gevent.sleep(0.01)
        assert not sending.ready(), "the write blocked the loop until something read the pipe"
    ticked.append(True)
    rescuer.get()
    while not sending.ready() or sum(map(len, got)) < 64 * 4097:
        got.append(gevent.get_hub().threadpool.apply(os.read, (read_end, 1 << 16)))
    assert sending.get().status is Status.DELIVERED
    assert b"".join(got) == b"".join(b"x" * 4096 + b"\n" for _ in range(64))
    os.close(read_end)
    os.close(write_end)
