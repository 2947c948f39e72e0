"""Generate docs/api.md, the API reference for host apps, from the docstrings (stdlib only, offline).

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if a listed name is missing or undocumented

The public surface is listed here on purpose: a name in this list is a promise to host apps.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SECTIONS: list[tuple[str, str, list[str]]] = [
    ("The facade", "daemonkit.hostapp", ["Daemon", "LogsResult", "LogLine", "UninstallResult"]),
    ("Spec", "daemonkit.spec", ["Spec", "Program", "Readiness", "Backoff", "LogLimits", "load_spec"]),
    ("Library functions and results", "daemonkit.api",
     ["start", "stop", "restart", "status_of", "install", "uninstall", "home_for_spec", "save_spec",
      "StartResult", "StopResult", "DaemonStatus", "ProgramStatus", "InstallResult"]),
    ("Respawn after an update", "daemonkit.update",
     ["respawn_after_update", "RespawnResult", "respawn_now", "manager_restart", "caller_inside"]),
    ("Mounting the commands", "daemonkit.cli", ["add_commands", "dispatch", "run_command"]),
    ("click adapter", "daemonkit.integrations.click", ["group", "command_table"]),
    ("Testing: the sandbox", "daemonkit.sandbox", ["Sandbox", "SandboxViolation", "protected_locations"]),
    ("Errors", "daemonkit.errors", ["DaemonkitError", "SpecError", "NotInstalledError", "NotRunningError"]),
]


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def _signature(obj: object) -> str:
    """The signature with annotations as written (``from __future__ import annotations`` keeps them as
    strings, which ``str(signature)`` would print quoted)."""
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    parts, star_done = [], False
    for param in sig.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "") + param.name
        star_done = star_done or param.kind is param.VAR_POSITIONAL
        if param.annotation is not param.empty:
            text += f": {_annotation(param.annotation)}"
        if param.default is not param.empty:
            text += f" = {param.default!r}" if not callable(param.default) else " = ..."
        parts.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"({', '.join(parts)}){ret}"


def _annotation(value: object) -> str:
    text = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    return str(text).strip("'\"")


def _summary(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split())


def render() -> tuple[str, list[str]]:
    """The markdown, and the problems (missing or undocumented names)."""
    problems: list[str] = []
    out = ["# API reference", "",
           "Generated from the docstrings by `python docs/gen_api.py`; see [host-apps.md](host-apps.md) for a",
           "guided tour and [testing.md](testing.md) for the pytest plugin. `from daemonkit import Daemon, Spec,",
           "Program, Readiness, load_spec, DaemonkitError, respawn_after_update` works without importing anything",
           "heavy.", ""]
    for title, module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        out += [f"## {title} (`{module_name}`)", ""]
        if _doc(module):
            out += [_doc(module).split("\n\n")[0], ""]
        for name in names:
            obj = getattr(module, name, None)
            if obj is None:
                problems.append(f"{module_name}.{name} does not exist")
                continue
            if not _doc(obj):
                problems.append(f"{module_name}.{name} has no docstring")
            kind = "class" if inspect.isclass(obj) else "def"
            out += [f"### `{name}`", "", "```python", f"{kind} {name}{_signature(obj)}", "```", "", _doc(obj), ""]
            if inspect.isclass(obj):
                for member_name, member in inspect.getmembers(obj):
                    if member_name.startswith("_") or member_name not in vars(obj):
                        continue
                    if not (inspect.isfunction(member) or isinstance(vars(obj)[member_name], property)):
                        continue
                    target = vars(obj)[member_name]
                    target = target.fget if isinstance(target, property) else target
                    sig = "" if isinstance(vars(obj)[member_name], property) else _signature(member)
                    doc = _doc(target)
                    out += [f"- `{name}.{member_name}{sig}`" + (f": {_summary(doc)}" if doc else "")]
                out.append("")
    return "\n".join(out).rstrip() + "\n", problems


def main(argv: list[str]) -> int:
    text, problems = render()
    for problem in problems:
        print(f"gen_api: {problem}", file=sys.stderr)
    if "--check" in argv:
        return 1 if problems else 0
    (ROOT / "docs" / "api.md").write_text(text)
    print(f"wrote docs/api.md ({len(text.splitlines())} lines)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
