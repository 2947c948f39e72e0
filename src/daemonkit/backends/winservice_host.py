"""The process the Service Control Manager starts for a daemonkit Windows Service (pywin32).

Run as ``"<base python.exe>" "<this file>" --service NAME --home HOME --site DIR...``, never through
``pythonservice.exe`` and never through a venv's ``python.exe``: the venv launcher starts the real
interpreter as a *child*, which then is not the process SCM waits for, and SCM reports error 1053
("did not respond in a timely fashion"); ``pythonservice.exe`` fails the same way when it cannot find
the venv's python DLLs. So the base interpreter is the service binary and the venv's site-packages
come in through ``--site`` (``site.addsitedir`` also runs pywin32's .pth, which adds its DLL folder).

The host runs the supervisor as a child in a kill-on-close job and maps its end onto SCM:
- a stop request: the supervisor is asked to stop gracefully, then its job is terminated after the grace;
- exit 0: the service reports STOPPED (no recovery action);
- exit 78 (configuration error): STOPPED with service-specific error 78 and no recovery: not a crash;
- any other exit: the host ends without reporting STOPPED, which SCM treats as a crash, so the
  recovery actions (restart after a delay, mapped from the restart policy) fire.
"""

from __future__ import annotations

import argparse
import os
import site
import sys


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="daemonkit-service-host")
    parser.add_argument("--service", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--site", action="append", default=[])
    parser.add_argument("--grace", type=float, default=15.0)
    parser.add_argument("--run-supervisor", action="store_true", help="child mode: be the supervisor")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    for directory in args.site:
        site.addsitedir(directory)
    if args.run_supervisor:
        # The supervisor child: the same site dirs (SCM gives services no user environment, and an
        # embeddable or venv interpreter ignores PYTHONPATH anyway), then daemonkit's own entry point.
        from daemonkit.cli import main as cli_main

        return int(cli_main(["supervise", "--home", args.home, "--backend", "winservice"]) or 0)
    import servicemanager  # noqa: E402 - only importable after the site dirs are known
    import win32event
    import win32service
    import win32serviceutil

    class DaemonkitService(win32serviceutil.ServiceFramework):
        _svc_name_ = args.service
        _svc_display_name_ = args.service

        def __init__(self, sargs: list[str]) -> None:
            super().__init__(sargs)
            self.stop_requested = win32event.CreateEvent(None, True, False, None)

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=int((args.grace + 10) * 1000))
            win32event.SetEvent(self.stop_requested)

        def SvcDoRun(self) -> None:  # noqa: N802
            code = run_supervised(args, self.stop_requested)
            if code in (0, None):
                return
            if code == 78:
                self.ReportServiceStatus(win32service.SERVICE_STOPPED, win32ExitCode=1066, svcExitCode=78)
                return
            os._exit(code)  # no STOPPED report: SCM sees a crash and applies the recovery actions

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(DaemonkitService)
    servicemanager.StartServiceCtrlDispatcher()
    return 0


def run_supervised(args: argparse.Namespace, stop_requested: int) -> int | None:
    """Run the supervisor until it exits (its code) or a stop is requested (None)."""
    import win32event

    from daemonkit.proc.winjob import Job
    from daemonkit.proc.winspawn import spawn_in_job

    home_logs = os.path.join(args.home, "logs")
    os.makedirs(home_logs, exist_ok=True)
    log = open(os.path.join(home_logs, "service.log"), "ab")
    job = Job(kill_on_close=True, breakaway_ok=True)
    argv = [sys.executable, os.path.abspath(__file__), "--run-supervisor", "--service", args.service,
            "--home", args.home]
    for directory in args.site:
        argv += ["--site", directory]
    proc = spawn_in_job(argv, job, stdout=log, stderr=log, cwd=args.home)
    handle = int(proc._handle)  # type: ignore[attr-defined]
    which = win32event.WaitForMultipleObjects([stop_requested, handle], False, win32event.INFINITE)
    if which == win32event.WAIT_OBJECT_0 + 1:
        code = proc.wait()
        job.close()
        log.close()
        return code
    _stop_gracefully(args, proc)
    job.terminate(0)
    job.close()
    log.close()
    return None


def _stop_gracefully(args: argparse.Namespace, proc: "object") -> None:
    try:
        from daemonkit import api
        from daemonkit.paths import Home
        from daemonkit.spec import load_spec

        home = Home(args.home)
        api.stop_supervisor(load_spec(home.spec_file), home, timeout=args.grace)
    except Exception:  # noqa: BLE001 - whatever failed, the job is terminated next
        pass
    try:
        proc.wait(timeout=1.0)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    sys.exit(main())
