"""One writer per database (ingest/process/writer_lock.py), in-process and across processes.

The end-to-end twin (two ``app.py`` on one ``--db``) is
``tests/test_app.py::test_second_writer_on_the_same_db_is_refused_and_told_who_holds_it``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.process.writer_lock import WriterLock, WriterLockHeld, forget_in_child, lock_path

ROOT = Path(__file__).resolve().parents[3]


def test_second_writer_is_refused_naming_the_holder_until_the_first_releases(tmp_path):
    db = tmp_path / "sub" / "m.db"
    first = WriterLock(db).acquire()
    assert lock_path(db).exists()  # its folder is made as the store would
    with pytest.raises(WriterLockHeld) as err:
        WriterLock(db).acquire()
    assert err.value.holder["pid"] == os.getpid()
    assert {"host", "started", "cmd"} <= set(err.value.holder)
    assert f"database {db} is already being written" in str(err.value)
    assert "--no-ingest" in str(err.value)
    first.release()
    first.release()  # idempotent
    WriterLock(db).acquire().release()


def test_a_forked_child_forgets_the_lock_and_the_parent_keeps_it(tmp_path):
    db = tmp_path / "m.db"
    lock = WriterLock(db).acquire()
    try:
        pid = os.fork()
        if pid == 0:  # child: drop the inherited descriptor, then the lock is still held
            code = 1
            try:
                forget_in_child(lock)
                try:
                    WriterLock(db).acquire()
                except WriterLockHeld:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(WriterLockHeld):  # the child's exit did not drop it
            WriterLock(db).acquire()
    finally:
        lock.release()
    forget_in_child(None)  # no lock (--no-ingest): nothing to do


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    db = tmp_path / "m.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from ingest.process.writer_lock import WriterLock; "
         f"WriterLock({str(db)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterLockHeld) as err:
            WriterLock(db).acquire()
        assert err.value.holder["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a dead holder's flock
        try:
            WriterLock(db).acquire().release()
            break
        except WriterLockHeld:
            assert time.monotonic() < deadline, "lock still held after its holder died"
            time.sleep(0.05)
