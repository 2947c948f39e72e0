"""``daemonkit demo``: run the bundled demo gateway under a supervisor and show what daemonkit does."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request

DEMO_NAME = "demo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_spec(port: int):  # type: ignore[no-untyped-def]
    from .spec import Program, Readiness, Spec

    url = f"http://127.0.0.1:{port}/health"
    gateway = Program(
        name="gateway",
        argv=(sys.executable, "-m", "daemonkit.demo_gateway", "--port", str(port)),
        restart="always",
        stop_grace=5.0,
        ready=Readiness("http", url, 20.0),
    )
    return Spec(name=DEMO_NAME, programs=(gateway,), description="daemonkit's demo gateway")


def fetch_health(url: str, timeout: float = 3.0) -> dict[str, object]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def run_demo(port: int = 0, *, color: bool = False) -> int:
    from . import api
    from .render import paint, render_status
    from .store.lock import probe_lock

    home = api.home_of(DEMO_NAME)
    if probe_lock(home.lock_file).held:
        status = api.status(DEMO_NAME)
        print(f"the demo is already running (supervisor pid {status.supervisor_pid})")
        print(render_status(status, color=color))
        _next_steps(installed=api.read_install_record(home) is not None)
        return 0
    spec = demo_spec(port or free_port())
    url = spec.programs[0].ready.target  # type: ignore[union-attr]
    backend = _best_backend(spec)
    print(f"starting the demo gateway on {url} (backend: {backend}) ...")
    if backend == "detached":
        supervisor_pid = api.start(spec).supervisor_pid
    else:
        installed = api.install(spec, backend=backend)  # waits for /health, like start
        for line in installed.lines:
            print(f"  {line}")
        supervisor_pid = installed.status.supervisor_pid if installed.status else None
    health = fetch_health(url)
    print(paint("✓", "green", color) + f" {spec.name} is up: supervisor pid {supervisor_pid}, "
          f"gateway pid {health['pid']}")
    print(f"GET {url} -> {json.dumps(health)}")
    print(render_status(api.status_of(spec, home), color=color))
    print(f"files: {home.path}")
    _next_steps(installed=backend != "detached")
    return 0


def _best_backend(spec) -> str:  # type: ignore[no-untyped-def]
    """The demo runs under the user's service manager when one is reachable (systemd --user), else
    detached. It does not pick launchd or Task Scheduler: registering a demo to run at every login on
    someone's Mac or PC is more than a demo should do unasked."""
    from .backends.chooser import choose
    from .errors import DaemonkitError

    try:
        choice = choose(spec)
    except DaemonkitError:
        return "detached"
    return "systemd" if choice.name == "systemd" else "detached"


def _next_steps(installed: bool = False) -> None:
    print("next:")
    print("  daemonkit status demo           # state of the supervisor and the gateway (--deep: probes)")
    print("  daemonkit logs demo             # the gateway's output (-f to follow, --events for the ledger)")
    print("  daemonkit stop demo             # stop it; nothing is left running")
    if installed:
        print("  daemonkit uninstall demo        # remove its systemd user unit and stop it")
        print("note: the demo is a systemd user unit now: systemd restarts its supervisor if it dies, and it")
        print("      starts again at your next login until 'daemonkit uninstall demo'. Without linger")
        print("      ('sudo loginctl enable-linger $USER') it stops when your last session ends.")
