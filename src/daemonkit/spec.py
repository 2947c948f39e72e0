"""The spec: what to run, how to restart it, when it is ready, how to stop it.

A ``Spec`` is one daemon (one supervisor, one home, one OS registration) with one or more ``Program``s.
It is plain data: immutable records (see ``Record``), loaded from and dumped to TOML, validated with errors that name
the file, the key and what is expected. Nothing here touches the machine.

TOML layout::

    name = "demo"                # daemon name: home dir, unit/plist/task name
    scope = "user"               # "user" (start at login) or "system" (start at boot, needs admin)

    [programs.gateway]
    argv = ["python3", "-m", "myapp.gateway", "--port", "8080"]
    cwd = "/srv/myapp"           # optional
    restart = "on-failure"       # always | on-failure | never
    stop_signal = "TERM"
    stop_grace = 10.0            # seconds between the stop signal and killing the tree
    [programs.gateway.env]
    MYAPP_MODE = "prod"
    [programs.gateway.ready]     # optional; one of tcp / http / file / notify
    http = "http://127.0.0.1:8080/health"
    timeout = 30.0
    [programs.gateway.backoff]   # optional; the defaults suit almost everyone
    initial = 0.1
    max = 30.0
    min_uptime = 1.0
    crashloop_restarts = 10
    crashloop_window = 60.0
    crashloop_cooldown = 60.0
    [programs.gateway.logs]
    max_bytes = 10485760
    backups = 3
"""

from __future__ import annotations

import math
import re
import signal
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import SpecError, UnsafeFileError
from .record import Record, init_field

__all__ = [
    "Backoff",
    "LogLimits",
    "Program",
    "Readiness",
    "RESTART_POLICIES",
    "SCOPES",
    "Spec",
    "dump_spec",
    "dumps_spec",
    "load_spec",
    "loads_spec",
    "validate_name",
]

RESTART_POLICIES = ("always", "on-failure", "never")
SCOPES = ("user", "system")
READINESS_KINDS = ("tcp", "http", "file", "notify")
# Names become file names, unit names and task names: keep them portable and traversal-free.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Even 1000 programs fit in a few hundred KiB; anything bigger is corruption, not a spec.
MAX_SPEC_BYTES = 8 * 1024 * 1024
_STOP_SIGNALS = ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "KILL")


def validate_name(name: object, *, source: str = "<spec>", key: str = "name") -> str:
    """Return ``name`` if it is a safe daemon/program name, else raise ``SpecError``."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith("."):
        raise SpecError(
            source,
            key,
            f"expected 1-64 characters of letters, digits, '_', '-', '.' starting with a letter or digit, got {name!r}",
            "pick a name like 'gateway' or 'my-bot'",
        )
    return name


class Backoff(Record):
    """Restart pacing. A death after ``min_uptime`` of stable running restarts at once; repeated quick
    deaths wait ``initial``, doubling (with jitter) up to ``max``. More than ``crashloop_restarts`` in
    ``crashloop_window`` seconds puts the program in ``crashloop`` for ``crashloop_cooldown`` seconds,
    after which it is tried again (never a permanent give-up)."""

    __slots__ = _FIELDS = ("initial", "max", "min_uptime", "crashloop_restarts", "crashloop_window",
                           "crashloop_cooldown")
    initial: float
    max: float
    min_uptime: float
    crashloop_restarts: int
    crashloop_window: float
    crashloop_cooldown: float

    def __init__(self, initial: float = 0.1, max: float = 30.0, min_uptime: float = 1.0,
                 crashloop_restarts: int = 10, crashloop_window: float = 60.0,
                 crashloop_cooldown: float = 60.0) -> None:
        init_field(self, "initial", initial)
        init_field(self, "max", max)
        init_field(self, "min_uptime", min_uptime)
        init_field(self, "crashloop_restarts", crashloop_restarts)
        init_field(self, "crashloop_window", crashloop_window)
        init_field(self, "crashloop_cooldown", crashloop_cooldown)


class Readiness(Record):
    """When a program counts as ready. ``kind`` is tcp ("host:port"), http (a URL answering 2xx),
    file (a path that exists) or notify (the program sends ``READY=1`` to ``$NOTIFY_SOCKET``)."""

    __slots__ = _FIELDS = ("kind", "target", "timeout")
    kind: str
    target: str
    timeout: float

    def __init__(self, kind: str, target: str = "", timeout: float = 30.0) -> None:
        init_field(self, "kind", kind)
        init_field(self, "target", target)
        init_field(self, "timeout", timeout)


class LogLimits(Record):
    """Program output is kept in ``logs/<program>.{out,err}.log`` with at most ``backups`` rotated files
    of ``max_bytes`` each, so a chatty or crash-looping program cannot fill the disk."""

    __slots__ = _FIELDS = ("max_bytes", "backups")
    max_bytes: int
    backups: int

    def __init__(self, max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> None:
        init_field(self, "max_bytes", max_bytes)
        init_field(self, "backups", backups)


class Program(Record):
    """One program of a daemon: its command line (``argv``; ``argv[0]`` is looked up on ``PATH``), an
    optional working directory and extra environment, its restart policy (``always`` / ``on-failure`` /
    ``never``), how it is stopped (``stop_signal``, then SIGKILL after ``stop_grace`` seconds), an
    optional readiness check, its backoff and log limits, and whether the supervisor starts it."""

    __slots__ = _FIELDS = ("name", "argv", "cwd", "env", "restart", "stop_signal", "stop_grace", "ready",
                           "backoff", "logs", "autostart")
    name: str
    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]
    restart: str
    stop_signal: str
    stop_grace: float
    ready: Readiness | None
    backoff: Backoff
    logs: LogLimits
    autostart: bool

    def __init__(self, name: str, argv: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None,
                 restart: str = "on-failure", stop_signal: str = "TERM", stop_grace: float = 10.0,
                 ready: Readiness | None = None, backoff: Backoff | None = None, logs: LogLimits | None = None,
                 autostart: bool = True) -> None:
        init_field(self, "name", name)
        # Accept lists and plain dicts from callers; store immutable, hashable-friendly forms.
        init_field(self, "argv", tuple(argv))
        init_field(self, "cwd", cwd)
        init_field(self, "env", dict(env or {}))
        init_field(self, "restart", restart)
        init_field(self, "stop_signal", stop_signal)
        init_field(self, "stop_grace", stop_grace)
        init_field(self, "ready", ready)
        # The defaults are shared: immutable, and a supervisor holds one per program otherwise.
        init_field(self, "backoff", _DEFAULT_BACKOFF if backoff is None else backoff)
        init_field(self, "logs", _DEFAULT_LOGS if logs is None else logs)
        init_field(self, "autostart", autostart)
        _validate_program(self, "<spec>", f"programs.{self.name}")

    @property
    def signal_number(self) -> int:
        return int(getattr(signal, "SIG" + self.stop_signal, signal.SIGTERM))


class Spec(Record):
    """One daemon: a name, a scope and its programs (order kept: start order)."""

    __slots__ = _FIELDS = ("name", "programs", "scope", "description", "app")
    name: str
    programs: tuple[Program, ...]
    scope: str
    description: str
    # The application that owns this daemon; its home lives under the app's own state dir.
    app: str

    def __init__(self, name: str, programs: Iterable[Program], scope: str = "user", description: str = "",
                 app: str = "daemonkit") -> None:
        init_field(self, "name", name)
        init_field(self, "programs", tuple(programs))
        init_field(self, "scope", scope)
        init_field(self, "description", description)
        init_field(self, "app", app)
        _validate_spec(self, "<spec>")

    def program(self, name: str) -> Program:
        for program in self.programs:
            if program.name == name:
                return program
        known = ", ".join(p.name for p in self.programs) or "none"
        raise SpecError("<spec>", f"programs.{name}", f"no such program (known: {known})",
                        "run 'daemonkit list' to see the programs")

    @property
    def max_stop_grace(self) -> float:
        return max((p.stop_grace for p in self.programs), default=0.0)

    def replace(self, **changes: Any) -> "Spec":
        return super().replace(**changes)  # type: ignore[no-any-return]


_DEFAULT_BACKOFF = Backoff()
_DEFAULT_LOGS = LogLimits()


# --------------------------------------------------------------------------------------------- validation


def _validate_spec(spec: Spec, source: str) -> None:
    validate_name(spec.name, source=source, key="name")
    validate_name(spec.app, source=source, key="app")
    if spec.scope not in SCOPES:
        raise SpecError(source, "scope", f"expected one of {', '.join(SCOPES)}, got {spec.scope!r}")
    if not spec.programs:
        raise SpecError(source, "programs", "expected at least one program", "add a [programs.NAME] table with argv")
    seen: set[str] = set()
    for program in spec.programs:
        if program.name in seen:
            raise SpecError(source, f"programs.{program.name}", "duplicate program name")
        seen.add(program.name)


def _validate_program(p: Program, source: str, key: str) -> None:
    validate_name(p.name, source=source, key=key)
    if not p.argv or not all(isinstance(a, str) for a in p.argv):
        raise SpecError(source, f"{key}.argv", "expected a non-empty list of strings",
                        'argv = ["python3", "-m", "myapp"]')
    for i, arg in enumerate(p.argv):
        if "\x00" in arg:
            raise SpecError(source, f"{key}.argv[{i}]", "NUL characters cannot be passed to a program")
    if p.argv[0] == "":
        raise SpecError(source, f"{key}.argv[0]", "the executable is empty")
    if p.cwd is not None and (not isinstance(p.cwd, str) or not p.cwd or "\x00" in p.cwd):
        raise SpecError(source, f"{key}.cwd", "expected a directory path")
    for k, v in p.env.items():
        if not isinstance(k, str) or not k or "=" in k or "\x00" in k:
            raise SpecError(source, f"{key}.env", f"invalid variable name {k!r}")
        if not isinstance(v, str) or "\x00" in v:
            raise SpecError(source, f"{key}.env.{k}", "expected a string without NUL characters")
    if p.restart not in RESTART_POLICIES:
        raise SpecError(source, f"{key}.restart", f"expected one of {', '.join(RESTART_POLICIES)}, got {p.restart!r}")
    if p.stop_signal not in _STOP_SIGNALS:
        raise SpecError(source, f"{key}.stop_signal", f"expected one of {', '.join(_STOP_SIGNALS)}, got {p.stop_signal!r}")
    _check_number(p.stop_grace, source, f"{key}.stop_grace", minimum=0.0, maximum=86400.0)
    if p.ready is not None:
        r = p.ready
        if r.kind not in READINESS_KINDS:
            raise SpecError(source, f"{key}.ready", f"expected one of {', '.join(READINESS_KINDS)}, got {r.kind!r}")
        if r.kind == "notify" and sys.platform == "win32":
            raise SpecError(source, f"{key}.ready.notify",
                            "not available on Windows: the sd_notify protocol needs Unix datagram sockets",
                            "use ready.tcp, ready.http or ready.file (e.g. a file the program creates when ready)")
        if r.kind != "notify" and not r.target:
            raise SpecError(source, f"{key}.ready.{r.kind}", "expected a non-empty target")
        if r.kind == "tcp":
            _parse_host_port(r.target, source, f"{key}.ready.tcp")
        if r.kind == "http" and not r.target.startswith(("http://", "https://")):
            raise SpecError(source, f"{key}.ready.http", f"expected an http:// or https:// URL, got {r.target!r}")
        _check_number(r.timeout, source, f"{key}.ready.timeout", minimum=0.0, maximum=86400.0)
    b = p.backoff
    for attr in ("initial", "max", "min_uptime", "crashloop_window", "crashloop_cooldown"):
        _check_number(getattr(b, attr), source, f"{key}.backoff.{attr}", minimum=0.0, maximum=86400.0)
    if not isinstance(b.crashloop_restarts, int) or b.crashloop_restarts < 1:
        raise SpecError(source, f"{key}.backoff.crashloop_restarts", "expected a whole number ≥ 1")
    if b.max < b.initial:
        raise SpecError(source, f"{key}.backoff.max", f"must be ≥ backoff.initial ({b.initial})")
    if not isinstance(p.logs.max_bytes, int) or p.logs.max_bytes < 1024:
        raise SpecError(source, f"{key}.logs.max_bytes", "expected a whole number of bytes ≥ 1024")
    if not isinstance(p.logs.backups, int) or not 0 <= p.logs.backups <= 100:
        raise SpecError(source, f"{key}.logs.backups", "expected a whole number from 0 to 100")


def _check_number(value: object, source: str, key: str, *, minimum: float, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not minimum <= value <= maximum:
        raise SpecError(source, key, f"expected a number from {minimum:g} to {maximum:g}, got {value!r}")


def _parse_host_port(target: str, source: str, key: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(source, key, f"expected HOST:PORT, got {target!r}", '"127.0.0.1:8080"')
    return host.strip("[]") or "127.0.0.1", int(port)


parse_host_port = _parse_host_port

# ------------------------------------------------------------------------------------------- TOML loading

_SPEC_KEYS = {"name", "scope", "description", "app", "programs"}
_PROGRAM_KEYS = {"argv", "cwd", "env", "restart", "stop_signal", "stop_grace", "ready", "backoff", "logs", "autostart"}


def load_spec(path: str | Path, *, cache: str | Path | None = None) -> Spec:
    """Read and validate a spec file. Errors name the file and the key.

    ``cache`` (a daemon home's ``spec.cache.json``): the parsed TOML kept as JSON together with the
    text it came from. When the text is the same, the data comes from there (and is validated as
    always) without importing the TOML parser: the supervisor, which keeps every module it imports for
    its whole life, saves ~0.3 MiB (docs/benchmarks.md, Memory). Otherwise the TOML is parsed and the
    cache rewritten; a missing, stale, foreign or damaged cache only means a TOML parse."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(str(path), "", "file not found", "check the path, or create one with 'daemonkit add'") from None
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(str(path), "", f"larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB (corrupt?)",
                        "a spec is a few lines of TOML; restore it or write it again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(str(path), "", "not UTF-8 text (is it a binary or corrupt file?)") from None
    key = _stat_key(path)
    spec = _from_cache(cache, text, str(path)) if cache is not None else None
    if spec is None:
        data = _parse_toml(text, str(path))
        spec = spec_from_dict(data, source=str(path))
        if cache is not None:
            _write_cache(cache, text, data)
    if key is not None:
        _LAST_LOADED[str(path)] = (key, spec)
    return spec


def loads_spec(text: str, *, source: str = "<spec>") -> Spec:
    return spec_from_dict(_parse_toml(text, source), source=source)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, "", f"not valid TOML: {exc}") from None


_CACHE_FORMAT = 1


def _from_cache(cache: str | Path, text: str, source: str) -> Spec | None:
    import json

    from .paths import check_private_file

    try:
        check_private_file(Path(cache))  # the same rules as the spec itself: it decides what runs
        with open(cache, "rb") as f:
            doc = json.loads(f.read(4 * MAX_SPEC_BYTES))
    except (OSError, ValueError, UnsafeFileError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _CACHE_FORMAT or doc.get("toml") != text \
            or not isinstance(doc.get("data"), dict):
        return None
    try:
        return spec_from_dict(doc["data"], source=source)
    except SpecError:
        return None  # cannot come from a cache we wrote; the TOML has the last word


def _write_cache(cache: str | Path, text: str, data: Mapping[str, Any]) -> None:
    import json

    from .store.atomic import write_text_atomic

    try:
        write_text_atomic(Path(cache), json.dumps({"format": _CACHE_FORMAT, "toml": text, "data": data}))
    except (OSError, TypeError, ValueError):
        pass  # only an optimisation


def spec_from_dict(data: Mapping[str, Any], *, source: str = "<spec>") -> Spec:
    _reject_unknown(data, _SPEC_KEYS, source, "")
    programs_data = data.get("programs")
    if not isinstance(programs_data, Mapping) or not programs_data:
        raise SpecError(source, "programs", "expected at least one [programs.NAME] table",
                        '[programs.app]\nargv = ["python3", "-m", "myapp"]')
    # Equal backoff/logs tables become one shared (frozen) object: a supervisor keeps every program's
    # for its whole life, and 1000 programs usually share a handful of distinct ones.
    shared: dict[Any, Any] = {}
    programs = [_program_from_dict(name, value, source, shared) for name, value in programs_data.items()]
    try:
        return _with_source(source, lambda: Spec(
            name=_get(data, "name", str, source, "name", required=True),
            programs=tuple(programs),
            scope=_get(data, "scope", str, source, "scope", default="user"),
            description=_get(data, "description", str, source, "description", default=""),
            app=_get(data, "app", str, source, "app", default="daemonkit"),
        ))
    except SpecError:
        raise


def _program_from_dict(name: str, value: Any, source: str, shared: dict[Any, Any] | None = None) -> Program:
    key = f"programs.{name}"
    validate_name(name, source=source, key=key)
    if not isinstance(value, Mapping):
        raise SpecError(source, key, "expected a table")
    _reject_unknown(value, _PROGRAM_KEYS, source, key)
    argv = value.get("argv")
    if isinstance(argv, str):
        raise SpecError(source, f"{key}.argv", "expected a list of strings, got a single string",
                        f'argv = {[argv]!r} or split it into words'.replace("'", '"'))
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise SpecError(source, f"{key}.argv", "expected a non-empty list of strings",
                        'argv = ["python3", "-m", "myapp"]')
    env = value.get("env", {})
    if not isinstance(env, Mapping):
        raise SpecError(source, f"{key}.env", "expected a table of strings")
    ready = _readiness_from(value.get("ready"), source, f"{key}.ready")
    shared = {} if shared is None else shared
    backoff = _sub_dataclass(Backoff, value.get("backoff"), source, f"{key}.backoff", shared)
    logs = _sub_dataclass(LogLimits, value.get("logs"), source, f"{key}.logs", shared)
    return _with_source(source, lambda: Program(
        name=name,
        argv=tuple(argv),
        cwd=_get(value, "cwd", str, source, f"{key}.cwd", default=None),
        env=dict(env),
        restart=_get(value, "restart", str, source, f"{key}.restart", default="on-failure"),
        stop_signal=_get(value, "stop_signal", str, source, f"{key}.stop_signal", default="TERM").upper().removeprefix("SIG"),
        stop_grace=_get(value, "stop_grace", (int, float), source, f"{key}.stop_grace", default=10.0),
        ready=ready,
        backoff=backoff,
        logs=logs,
        autostart=_get(value, "autostart", bool, source, f"{key}.autostart", default=True),
    ))


def _readiness_from(value: Any, source: str, key: str) -> Readiness | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(source, key, "expected a table with one of tcp / http / file / notify")
    _reject_unknown(value, set(READINESS_KINDS) | {"timeout"}, source, key)
    kinds = [k for k in READINESS_KINDS if k in value]
    if len(kinds) != 1:
        raise SpecError(source, key, f"expected exactly one of tcp / http / file / notify, got {kinds or 'none'}")
    kind = kinds[0]
    target = value[kind]
    if kind == "notify":
        if target is not True:
            raise SpecError(source, f"{key}.notify", "expected true")
        target = ""
    elif not isinstance(target, str):
        raise SpecError(source, f"{key}.{kind}", "expected a string")
    timeout = _get(value, "timeout", (int, float), source, f"{key}.timeout", default=30.0)
    return Readiness(kind=kind, target=target, timeout=float(timeout))


def _sub_dataclass(cls: type, value: Any, source: str, key: str, shared: dict[Any, Any] | None = None) -> Any:
    if value is None:
        return _DEFAULTS[cls]  # frozen: one shared instance serves every program
    if not isinstance(value, Mapping):
        raise SpecError(source, key, "expected a table")
    names = set(cls._FIELDS)
    _reject_unknown(value, names, source, key)
    defaults = cls()
    kwargs = {}
    for name in names:
        if name in value:
            expected = type(getattr(defaults, name))
            got = value[name]
            ok = isinstance(got, (int, float)) and not isinstance(got, bool) if expected is float \
                else isinstance(got, expected) and not isinstance(got, bool)
            if not ok:
                raise SpecError(source, f"{key}.{name}", f"expected a {'number' if expected is float else 'whole number'}, got {got!r}")
            kwargs[name] = float(got) if expected is float else got
    if not kwargs:
        return _DEFAULTS[cls]
    if shared is None:
        return cls(**kwargs)
    token = (cls, tuple(sorted(kwargs.items())))
    instance = shared.get(token)
    if instance is None:
        instance = shared[token] = cls(**kwargs)
    return instance


def _get(data: Mapping[str, Any], name: str, types: Any, source: str, key: str, *,
         default: Any = None, required: bool = False) -> Any:
    if name not in data:
        if required:
            raise SpecError(source, key, "missing")
        return default
    value = data[name]
    if isinstance(value, bool) and types is not bool:
        raise SpecError(source, key, f"expected {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise SpecError(source, key, f"expected {_type_name(types)}, got {value!r}")
    return value


def _type_name(types: Any) -> str:
    if types is str:
        return "a string"
    if types is bool:
        return "true or false"
    return "a number"


def _reject_unknown(data: Mapping[str, Any], known: Iterable[str], source: str, key: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise SpecError(source, where, f"unknown key (known keys: {', '.join(sorted(known))})")


def _with_source(source: str, build: Any) -> Any:
    """Run a constructor, re-labelling its validation errors with the real file name."""
    try:
        return build()
    except SpecError as exc:
        if exc.source == "<spec>" and source != "<spec>":
            raise SpecError(source, exc.key, exc.problem, exc.hint) from None
        raise


# ------------------------------------------------------------------------------------------- TOML dumping


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The TOML-able form, with only what differs from the defaults (the defaults are documented in
    the spec classes and docs/engine.md). A 500-program spec stays ~1,500 lines instead of ~11,000, which
    is most of a cold start's parsing time."""
    out: dict[str, Any] = {"name": spec.name, "scope": spec.scope}
    if spec.description:
        out["description"] = spec.description
    if spec.app != "daemonkit":
        out["app"] = spec.app
    programs: dict[str, Any] = {}
    for p in spec.programs:
        entry: dict[str, Any] = {"argv": list(p.argv)}
        if p.cwd is not None:
            entry["cwd"] = p.cwd
        if p.restart != _DEFAULT_PROGRAM["restart"]:
            entry["restart"] = p.restart
        if p.stop_signal != _DEFAULT_PROGRAM["stop_signal"]:
            entry["stop_signal"] = p.stop_signal
        if p.stop_grace != _DEFAULT_PROGRAM["stop_grace"]:
            entry["stop_grace"] = float(p.stop_grace)
        if not p.autostart:
            entry["autostart"] = False
        if p.env:
            entry["env"] = dict(p.env)
        if p.ready is not None:
            entry["ready"] = {p.ready.kind: (True if p.ready.kind == "notify" else p.ready.target)}
            if p.ready.timeout != _DEFAULT_READY_TIMEOUT:
                entry["ready"]["timeout"] = float(p.ready.timeout)
        for key, value, default in (("backoff", p.backoff, _DEFAULT_BACKOFF), ("logs", p.logs, _DEFAULT_LOGS)):
            if value != default:
                entry[key] = {name: getattr(value, name) for name in value._FIELDS
                              if getattr(value, name) != getattr(default, name)}
        programs[p.name] = entry
    out["programs"] = programs
    return out


_DEFAULT_PROGRAM = {"restart": "on-failure", "stop_signal": "TERM", "stop_grace": 10.0}  # Program's defaults
_DEFAULT_READY_TIMEOUT = Readiness("notify").timeout
_DEFAULTS: dict[type, Any] = {Backoff: _DEFAULT_BACKOFF, LogLimits: _DEFAULT_LOGS}
# What load_spec last read, so that saving the same spec back to the same unchanged file is a no-op:
# a start never rewrites spec.toml (and a hand-written file keeps its comments and layout).
_LAST_LOADED: dict[str, tuple[tuple[int, int], Spec]] = {}


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def dumps_spec(spec: Spec) -> str:
    import tomli_w

    return tomli_w.dumps(spec_to_dict(spec))


def dump_spec(spec: Spec, path: str | Path, *, cache: str | Path | None = None) -> None:
    """Write the spec atomically with owner-only permissions; nothing is written when the file already
    holds this spec. ``cache``: also write the parsed form ``load_spec(path, cache=...)`` reads."""
    from .store.atomic import write_text_atomic

    path = Path(path)
    key = _stat_key(path)
    if key is not None:
        remembered = _LAST_LOADED.get(str(path))
        if remembered is not None and remembered[0] == key and remembered[1] == spec:
            return
    text = dumps_spec(spec)
    if key is not None:
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
    write_text_atomic(path, text)
    if cache is not None:
        _write_cache(cache, text, spec_to_dict(spec))  # what parsing ``text`` gives (tested)
    key = _stat_key(path)
    if key is not None:
        _LAST_LOADED[str(path)] = (key, spec)
