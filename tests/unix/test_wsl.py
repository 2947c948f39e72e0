"""WSL detection from simulated /proc and environment inputs, and the guidance users get."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemonkit.backends.wsl import WslInputs, detect, guidance, read_inputs

WSL2_KERNEL = "5.15.153.1-microsoft-standard-WSL2"
WSL1_KERNEL = "4.4.0-19041-Microsoft"


@pytest.mark.parametrize("inputs, is_wsl, version, systemd", [
    (WslInputs(osrelease="6.1.0-18-amd64", pid1_comm="systemd", sd_booted=True), False, None, False),
    (WslInputs(osrelease=WSL2_KERNEL, pid1_comm="systemd", sd_booted=True,
               env={"WSL_DISTRO_NAME": "Ubuntu"}), True, 2, True),
    (WslInputs(osrelease=WSL2_KERNEL, pid1_comm="init", env={"WSL_DISTRO_NAME": "Ubuntu"}), True, 2, False),
    (WslInputs(osrelease="4.19.128-microsoft-standard", pid1_comm="init"), True, 2, False),
    (WslInputs(osrelease=WSL1_KERNEL, pid1_comm="init", interop=True), True, 1, False),
    # a custom WSL 2 kernel: recognised by the environment, version unknown
    (WslInputs(osrelease="6.6.0-custom", pid1_comm="systemd", sd_booted=True,
               env={"WSL_INTEROP": "/run/WSL/1_interop"}), True, None, True),
    # systemd named as PID 1 but not booted (no /run/systemd/system): not usable
    (WslInputs(osrelease=WSL2_KERNEL, pid1_comm="systemd", sd_booted=False), True, 2, False),
])
def test_detect(inputs: WslInputs, is_wsl: bool, version: int | None, systemd: bool) -> None:
    info = detect(inputs)
    assert (info.is_wsl, info.version, info.systemd) == (is_wsl, version, systemd)
    if is_wsl:
        assert info.evidence


def test_read_inputs_from_a_fake_proc(tmp_path: Path) -> None:
    proc, run = tmp_path / "proc", tmp_path / "run"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(WSL2_KERNEL + "\n")
    (proc / "1").mkdir()
    (proc / "1" / "comm").write_text("systemd\n")
    (proc / "sys" / "fs" / "binfmt_misc").mkdir(parents=True)
    (proc / "sys" / "fs" / "binfmt_misc" / "WSLInterop").write_text("enabled")
    (run / "systemd" / "system").mkdir(parents=True)
    inputs = read_inputs(proc, run, env={"WSL_DISTRO_NAME": "Debian"})
    assert inputs == WslInputs(WSL2_KERNEL, "", "systemd", {"WSL_DISTRO_NAME": "Debian"}, True, True)
    info = detect(inputs)
    assert info.is_wsl and info.version == 2 and info.systemd and info.distro == "Debian"


def test_this_machine_is_not_wsl() -> None:
    # The CI host is a Debian VM: a real read of /proc must not claim WSL.
    assert not detect(read_inputs()).is_wsl


def test_guidance_without_systemd_names_the_fix() -> None:
    info = detect(WslInputs(osrelease=WSL2_KERNEL, pid1_comm="init", env={"WSL_DISTRO_NAME": "Ubuntu"}))
    text = "\n".join(guidance(info, "demo"))
    assert "[boot]\n    systemd=true" in text and "/etc/wsl.conf" in text and "wsl --shutdown" in text
    assert "detached" in text and "wsl.exe -d Ubuntu --exec sleep infinity" in text


def test_guidance_with_systemd_explains_the_idle_shutdown() -> None:
    info = detect(WslInputs(osrelease=WSL2_KERNEL, pid1_comm="systemd", sd_booted=True))
    lines = guidance(info, "demo")
    assert lines[0] == "WSL 2 with systemd: demo runs as a systemd unit"
    assert "last terminal closes" in lines[1] and "systemd services do not keep WSL running" in lines[1]


def test_guidance_for_wsl1() -> None:
    lines = guidance(detect(WslInputs(osrelease=WSL1_KERNEL)), "demo")
    assert "WSL 1, which cannot run systemd" in lines[0] and "wsl --set-version" in lines[1]


def test_no_guidance_off_wsl() -> None:
    assert guidance(detect(WslInputs(osrelease="6.1.0-18-amd64")), "demo") == []
