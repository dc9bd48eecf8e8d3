"""The guard around torch's C++ extension builds: a stale build lock left by a killed process is
cleared instead of being waited on forever, and the guard itself dies with its holder."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparsebench.extlock import GUARD_NAME, extension_guard, remove_stale_locks


def test_a_stale_torch_build_lock_is_removed_so_torch_can_take_it(tmp_path: Path) -> None:
    from torch.utils.file_baton import FileBaton

    (tmp_path / "packbits_cpp").mkdir()
    stale = tmp_path / "packbits_cpp" / "lock"
    stale.write_text("")  # what cpp_extension.load leaves when killed mid-build
    (tmp_path / "packbits_cpp" / "packbits.o").write_text("kept")
    with extension_guard(tmp_path):
        assert not stale.exists()
        baton = FileBaton(str(stale))
        assert baton.try_acquire()  # a load would now build instead of waiting
        baton.release()
    assert (tmp_path / "packbits_cpp" / "packbits.o").read_text() == "kept"
    assert remove_stale_locks(tmp_path) == []


def test_the_guard_excludes_other_processes_and_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from sparsebench.extlock import extension_guard
            with extension_guard(Path({str(tmp_path)!r})):
                print("held", flush=True)
                time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        fd = os.open(tmp_path / GUARD_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel dropped the dead holder's lock
        finally:
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    with extension_guard(tmp_path):
        pass
