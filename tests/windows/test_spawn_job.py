"""Detached spawns, breakaway and its fallback, job objects, stop events and liveness, for real."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from .helpers import wait_until
from daemonkit.proc import winjob, winspawn
from daemonkit.proc.winstop import ENV_STOP_EVENT, StopEvent, new_name

SLEEPER = "import time; time.sleep(120)"


def _read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().strip(), 30), f"{path} never written"
    return int(path.read_text().strip())


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


def _run_parent(code: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_detached_child_outlives_its_parent_and_breaks_away(tmp_path):
    out = tmp_path / "child.pid"
    result = _run_parent(f"""
        import sys
        from pathlib import Path
        from daemonkit.proc.spawn import spawn_detached
        code = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(120)" % {str(out)!r}
        r = spawn_detached([sys.executable, "-c", code], log_path=Path({str(tmp_path / "sup.log")!r}))
        print(r.breakaway, r.identity.pid)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    breakaway, pid = result.stdout.split()
    assert breakaway == "True"
    assert wait_until(out.exists, 30), (tmp_path / "sup.log").read_text()
    child = _read_pid(out)
    assert child == int(pid)
    try:
        assert winjob.is_running(child), "the detached child died with its parent"
        assert winjob.exit_code(child) is None
    finally:
        _kill(child)
    assert wait_until(lambda: not winjob.is_running(child), 10)


JOB_PARENT = """
    import os, sys, time
    from daemonkit.proc import winjob
    from daemonkit.proc.winspawn import spawn_detached
    job = winjob.Job(kill_on_close=True, breakaway_ok={ok})
    job.assign_pid(os.getpid())
    assert winjob.breakaway_allowed() == {ok}
    s = spawn_detached([sys.executable, "-c", "import time; time.sleep(120)"])
    print(s.breakaway, s.proc.pid, s.note)
    sys.stdout.flush()
    s.proc.returncode = 0
    # exiting closes the job's only handle: KILL_ON_JOB_CLOSE ends whatever is still inside it
"""


def test_breakaway_denied_falls_back_inside_the_job_and_says_so(tmp_path):
    result = _run_parent(JOB_PARENT.format(ok=False), tmp_path)
    assert result.returncode == 0, result.stderr
    breakaway, pid, note = result.stdout.split(" ", 2)
    assert breakaway == "False"
    assert "winerror 5" in note
    # It ran inside the parent's job, so it died when that job closed: exactly what the note warns about.
    assert wait_until(lambda: not winjob.is_running(int(pid)), 15)


def test_breakaway_allowed_survives_the_job(tmp_path):
    result = _run_parent(JOB_PARENT.format(ok=True), tmp_path)
    assert result.returncode == 0, result.stderr
    breakaway, pid, note = result.stdout.split(" ", 2)
    assert breakaway == "True" and not note.strip()
    try:
        time.sleep(0.5)
        assert winjob.is_running(int(pid)), "a child that broke away died with the job"
    finally:
        _kill(int(pid))


SUPERVISOR_LIKE = """
    import os, sys, time
    from daemonkit.proc import winjob
    from daemonkit.proc.winspawn import spawn_in_job
    job = winjob.Job(kill_on_close=True, breakaway_ok=True)
    grandchild = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); open(%r, 'w').write(str(p.pid)); time.sleep(120)" % {grand!r}
    proc = spawn_in_job([sys.executable, "-c", grandchild], job)
    open({prog!r}, 'w').write(str(proc.pid))
    open({injob!r}, 'w').write(str(winjob.process_in_job(proc.pid, job)))
    time.sleep(120)
"""


def test_killed_supervisor_takes_its_programs_and_their_children(tmp_path):
    prog, grand, injob = tmp_path / "prog.pid", tmp_path / "grand.pid", tmp_path / "injob"
    script = tmp_path / "sup.py"
    script.write_text(textwrap.dedent(SUPERVISOR_LIKE.format(prog=str(prog), grand=str(grand), injob=str(injob))), encoding="utf-8")
    sup = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        program, grandchild = _read_pid(prog), _read_pid(grand)
        assert wait_until(lambda: injob.exists() and injob.read_text() == "True")
        assert winjob.is_running(program) and winjob.is_running(grandchild)
        sup.kill()  # TerminateProcess: no cleanup code of the supervisor runs
        sup.wait(10)
        assert wait_until(lambda: not winjob.is_running(program), 15), "program outlived its killed supervisor"
        assert wait_until(lambda: not winjob.is_running(grandchild), 15), "the program's child outlived it"
    finally:
        sup.kill()
        for path in (prog, grand):
            if path.exists() and path.read_text():
                _kill(int(path.read_text()))


def test_terminate_job_ends_the_whole_program_tree_and_lists_it(tmp_path):
    grand = tmp_path / "grand.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            f" open(r'{grand}', 'w').write(str(p.pid)); time.sleep(120)")
    with winjob.Job(kill_on_close=True) as job:
        proc = winspawn.spawn_in_job([sys.executable, "-c", code], job)
        grandchild = _read_pid(grand)
        assert {proc.pid, grandchild} <= set(job.pids())  # plus the hidden console's conhost
        assert winjob.process_in_job(proc.pid, job)
        job.terminate(7)
        assert proc.wait(10) == 7
        assert wait_until(lambda: not winjob.is_running(grandchild), 10)
        assert wait_until(lambda: job.pids() == [], 10)


def test_stop_event_reaches_wait_for_stop(tmp_path):
    marker = tmp_path / "drained"
    event = StopEvent(new_name("web"))
    code = ("from daemonkit.worker import wait_for_stop; import sys; asked = wait_for_stop(60);"
            f" open(r'{marker}', 'w').write(str(asked)); sys.exit(0 if asked else 3)")
    env = {**__import__("os").environ, ENV_STOP_EVENT: event.name}
    with winjob.Job(kill_on_close=True) as job:
        proc = winspawn.spawn_in_job([sys.executable, "-c", code], job, env=env)
        time.sleep(0.5)
        assert proc.poll() is None, "the program did not wait for the stop event"
        event.set()
        assert proc.wait(20) == 0
    assert marker.read_text() == "True"
    event.close()


def test_exit_code_and_liveness_use_handles():
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(42)"])
    assert winjob.exit_code(proc.pid) is None  # 259 STILL_ACTIVE is not mistaken for an exit code
    proc.wait(20)
    # The handle Popen holds keeps the process object, so its real exit code is still readable.
    assert winjob.exit_code(proc.pid) == 42


def test_run_hidden_captures_output_and_times_out():
    done = winspawn.run_hidden([sys.executable, "-c", "print('hello')"], timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == b"hello"
    with pytest.raises(subprocess.TimeoutExpired):
        winspawn.run_hidden([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_lock_contention_between_real_processes(tmp_path):
    from daemonkit.store.lock import SupervisorLock, probe_lock

    lock_file = tmp_path / "supervisor.lock"
    ready = tmp_path / "ready"
    code = ("import time; from pathlib import Path; from daemonkit.store.lock import SupervisorLock;"
            f" l = SupervisorLock(Path(r'{lock_file}')); assert l.acquire({{'pid': 1, 'who': 'holder'}});"
            f" open(r'{ready}', 'w').write('1'); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert wait_until(ready.exists, 30)
        probe = probe_lock(lock_file)
        assert probe.held and probe.record == {"pid": 1, "who": "holder"}  # the record stays readable
        assert not SupervisorLock(lock_file).acquire({"pid": 2})
        holder.kill()
        holder.wait(10)
        assert wait_until(lambda: not probe_lock(lock_file).held, 10), "the OS did not drop a dead holder's lock"
        mine = SupervisorLock(lock_file)
        assert mine.acquire({"pid": 3})
        mine.release()
    finally:
        holder.kill()
