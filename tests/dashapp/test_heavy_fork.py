"""A background job forked while another thread is importing a module must not hang.

Dash's background callbacks fork the server. Plotly imports its figure classes lazily, so a
request thread can be inside an import at the moment of the fork; the child inherits that
module's import lock held by a thread that does not exist there, and the job hung forever
at its first figure (seen with the screener on a freshly started app).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from dashapp.heavy import release_import_locks_after_fork


def _fork_during_import(tmp_path, name: str, release: bool) -> bool:
    """True if a child forked mid-import could import the module within 10 s."""
    (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(1.5)\nVALUE = 42\n")
    sys.path.insert(0, str(tmp_path))
    try:
        importer = threading.Thread(target=__import__, args=(name,), daemon=True)
        importer.start()
        time.sleep(0.5)  # the importer now holds the module's import lock
        pid = os.fork()
        if pid == 0:  # child: only this thread exists
            try:
                if release:
                    release_import_locks_after_fork()
                module = __import__(name)
                os._exit(0 if module.VALUE == 42 else 2)
            except BaseException:
                os._exit(3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False
    finally:
        importer.join(5)
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_a_job_forked_during_another_threads_import_does_not_hang(tmp_path):
    assert _fork_during_import(tmp_path, "slow_mod_released", release=True)


def test_without_the_release_the_child_hangs(tmp_path):
    """The hazard is real: without the release the forked child never gets the lock."""
    assert not _fork_during_import(tmp_path, "slow_mod_held", release=False)
