"""WSL: is this Linux running under Windows, which WSL, and is systemd PID 1 there?

That decides the backend (systemd when it is PID 1, else detached) and what we must tell the user:
WSL stops a distro about 10-20 s after its last terminal closes, whatever runs inside it, systemd
services included. Detection is a pure function of a few files and variables (``WslInputs``), so tests
feed it simulated ``/proc`` contents; ``read_inputs`` gathers the real ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class WslInputs:
    osrelease: str = ""  # /proc/sys/kernel/osrelease
    proc_version: str = ""  # /proc/version
    pid1_comm: str = ""  # /proc/1/comm
    env: Mapping[str, str] = field(default_factory=dict)
    interop: bool = False  # /proc/sys/fs/binfmt_misc/WSLInterop exists
    sd_booted: bool = False  # /run/systemd/system exists


@dataclass(frozen=True)
class WslInfo:
    is_wsl: bool
    version: int | None = None  # 1 or 2; None when WSL is recognised but the kernel string is custom
    systemd: bool = False  # systemd is PID 1
    distro: str = ""
    evidence: tuple[str, ...] = ()


def _read(path: Path, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def read_inputs(proc: Path = Path("/proc"), run: Path = Path("/run"),
                env: Mapping[str, str] | None = None) -> WslInputs:
    """The real inputs (``proc`` and ``run`` can point at a fake tree)."""
    return WslInputs(
        osrelease=_read(proc / "sys" / "kernel" / "osrelease"),
        proc_version=_read(proc / "version"),
        pid1_comm=_read(proc / "1" / "comm"),
        env=dict(os.environ if env is None else env),
        interop=(proc / "sys" / "fs" / "binfmt_misc" / "WSLInterop").exists(),
        sd_booted=(run / "systemd" / "system").is_dir(),
    )


def detect(inputs: WslInputs) -> WslInfo:
    """WSL 2 kernels say ``...-microsoft-standard-WSL2``; WSL 1 reports a fake ``4.4.0-NNNNN-Microsoft``."""
    evidence: list[str] = []
    kernel = inputs.osrelease or inputs.proc_version
    if "microsoft" in kernel.lower():
        evidence.append(f"kernel {kernel!r}")
    for var in ("WSL_DISTRO_NAME", "WSL_INTEROP"):
        if inputs.env.get(var):
            evidence.append(f"{var}={inputs.env[var]}")
    if inputs.interop:
        evidence.append("WSLInterop binfmt handler registered")
    if not evidence:
        return WslInfo(is_wsl=False)
    version: int | None = None
    if "WSL2" in kernel or "microsoft-standard" in kernel:
        version = 2
    elif "Microsoft" in kernel:  # WSL 1's synthetic kernel string uses a capital M
        version = 1
    systemd = inputs.pid1_comm == "systemd" and inputs.sd_booted
    evidence.append(f"PID 1 is {inputs.pid1_comm or 'unknown'!r}")
    return WslInfo(True, version, systemd, inputs.env.get("WSL_DISTRO_NAME", ""), tuple(evidence))


def guidance(info: WslInfo, daemon: str) -> list[str]:
    """What the user must know on this WSL, as plain lines (empty when not WSL)."""
    if not info.is_wsl:
        return []
    distro = info.distro or "<distro>"
    keep_alive = (
        f"WSL stops the {distro} distro about 10-20 s after its last terminal closes, and {daemon} with it "
        "(systemd services do not keep WSL running). To keep it up, keep a WSL terminal open, or have Windows "
        f"start one hidden at logon, e.g. a Task Scheduler task running: wsl.exe -d {distro} --exec sleep infinity"
    )
    if info.version == 1:
        return [
            "this is WSL 1, which cannot run systemd: daemonkit starts the supervisor detached, and nothing "
            f"starts {daemon} when WSL starts",
            f"to get a service manager, convert the distro from Windows (wsl --set-version {distro} 2), then "
            f"enable systemd with [boot] systemd=true in /etc/wsl.conf; until then run 'daemonkit start {daemon}' "
            "from ~/.profile",
            keep_alive,
        ]
    if info.systemd:
        which = f"WSL {info.version}" if info.version else "WSL"
        return [f"{which} with systemd: {daemon} runs as a systemd unit", keep_alive]
    return [
        "systemd is not running in this WSL distro, so daemonkit starts the supervisor detached and nothing "
        f"starts {daemon} when WSL starts",
        "to enable systemd: add these lines to /etc/wsl.conf (sudo), then run 'wsl --shutdown' from Windows "
        f"and open the distro again, then 'daemonkit install {daemon}' once more:\n    [boot]\n    systemd=true",
        keep_alive,
    ]
