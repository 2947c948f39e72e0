"""``daemonkit logs``: program output and the lifecycle ledger, with ``-f`` following across rotation."""

from __future__ import annotations

import json
import os

import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .paths import Home
    from .spec import Spec

FOLLOW_INTERVAL = 0.2


def _tail_lines(path: Path, n: int) -> list[str]:
    from .api import tail_file

    text = tail_file(path, n)
    return text.splitlines() if text else []


def format_event(event: dict[str, object]) -> str:
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event.get("ts", 0) or 0)))
    who = event.get("program") or "supervisor"
    pid = f" pid {event['pid']}" if event.get("pid") else ""
    detail = event.get("detail") or {}
    extra = " ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, dict) else str(detail)
    return f"{ts} {who}{pid}: {event.get('event')} {extra}".rstrip()


def show_logs(spec: "Spec", home: "Home", *, lines: int = 20, follow: bool = False, program: str | None = None,
              stream: str = "both", events: bool = False, as_json: bool = False) -> int:
    from .store.events import tail_events

    if events:
        for event in tail_events(home.events_file, lines):
            if program and event.get("program") != program:
                continue
            print(json.dumps(event) if as_json else format_event(event))
        if follow:
            for line in _follow(home.events_file):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not program or event.get("program") == program:
                    print(json.dumps(event) if as_json else format_event(event), flush=True)
        return 0
    names = [program] if program else [p.name for p in spec.programs]
    if program:
        spec.program(program)
    streams = ("out", "err") if stream == "both" else (stream,)
    files = [(name, s, home.program_log(name, s)) for name in names for s in streams]
    for name, s, path in files:
        for line in _tail_lines(path, lines):
            _emit(name, s, line, as_json)
    if follow:
        followers = [(name, s, _follow(path)) for name, s, path in files]
        while True:
            idle = True
            for name, s, gen in followers:
                line = next(gen)
                while line is not None:
                    idle = False
                    _emit(name, s, line, as_json)
                    line = next(gen)
            if idle:
                time.sleep(FOLLOW_INTERVAL)
    return 0


def _emit(name: str, stream: str, line: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"program": name, "stream": stream, "line": line}), flush=True)
    else:
        print(f"{name}|{stream}| {line}" if stream == "err" else f"{name}| {line}", flush=True)


def _follow(path: Path) -> Iterator[str | None]:
    """Yield new lines as they are appended; ``None`` when there is nothing new. Reopens the file when it
    was rotated (inode changed) or truncated, so following survives rotation."""
    handle = None
    inode = None
    buffer = b""
    while True:
        if handle is None:
            try:
                handle = open(path, "rb")
                handle.seek(0, os.SEEK_END)
                inode = os.fstat(handle.fileno()).st_ino
            except OSError:
                handle = None
                yield None
                continue
        chunk = handle.read(65536)
        if chunk:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
            continue
        try:
            st = os.stat(path)
            rotated = st.st_ino != inode or st.st_size < handle.tell()
        except OSError:
            rotated = False
        if rotated:
            handle.close()
            handle = open(path, "rb")  # the new generation: read it from the start
            inode = os.fstat(handle.fileno()).st_ino
            continue
        yield None


