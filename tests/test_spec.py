"""Spec loading, dumping and validation: errors name the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemonkit.errors import SpecError
from daemonkit.spec import Backoff, Program, Readiness, Spec, dump_spec, dumps_spec, load_spec, loads_spec

GOOD = """
name = "gw"
scope = "user"
[programs.web]
argv = ["python3", "-m", "http.server", "8000"]
restart = "always"
stop_grace = 3
[programs.web.env]
MODE = "prod"
[programs.web.ready]
tcp = "127.0.0.1:8000"
timeout = 5
[programs.worker]
argv = ["python3", "-c", "import time; time.sleep(1e9)"]
"""


def test_load_good_spec() -> None:
    spec = loads_spec(GOOD)
    assert spec.name == "gw"
    assert [p.name for p in spec.programs] == ["web", "worker"]
    web = spec.program("web")
    assert web.argv == ("python3", "-m", "http.server", "8000")
    assert web.restart == "always" and web.stop_grace == 3.0
    assert web.env == {"MODE": "prod"}
    assert web.ready == Readiness("tcp", "127.0.0.1:8000", 5.0)
    worker = spec.program("worker")
    assert worker.restart == "on-failure" and worker.ready is None and worker.backoff == Backoff()


def test_round_trip(tmp_path: Path) -> None:
    spec = loads_spec(GOOD)
    path = tmp_path / "spec.toml"
    dump_spec(spec, path)
    assert load_spec(path) == spec
    assert path.stat().st_mode & 0o777 == 0o600
    # Hostile strings survive the round trip byte-exact.
    hostile = Spec("h", (Program("p", ("x", 'a "quoted" $HOME %PATH% \\ back', "new\nline", "ünï", "' ; rm -rf /")),))
    assert loads_spec(dumps_spec(hostile)) == hostile


@pytest.mark.parametrize("text, key, fragment", [
    ('name = "x"\n', "programs", "at least one"),
    ('name = "x"\n[programs.a]\n', "programs.a.argv", "non-empty list"),
    ('name = "x"\n[programs.a]\nargv = "python3 app.py"\n', "programs.a.argv", "single string"),
    ('name = "x"\n[programs.a]\nargv = []\n', "programs.a.argv", "non-empty"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\nrestart = "sometimes"\n', "programs.a.restart", "always, on-failure, never"),
    ('name = "../etc"\n[programs.a]\nargv = ["p"]\n', "name", "letters, digits"),
    ('name = "x"\n[programs."a/b"]\nargv = ["p"]\n', "programs.a/b", "letters, digits"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\nstop_grace = -1\n', "programs.a.stop_grace", "from 0"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\nstop_grace = true\n', "programs.a.stop_grace", "a number"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\nbogus = 1\n', "programs.a.bogus", "unknown key"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\n[programs.a.ready]\ntcp = "nohost"\n', "programs.a.ready.tcp", "HOST:PORT"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\n[programs.a.ready]\nhttp = "ftp://x"\n', "programs.a.ready.http", "URL"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\n[programs.a.ready]\ntcp = "h:1"\nfile = "/x"\n', "programs.a.ready", "exactly one"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\n[programs.a.backoff]\ninitial = 5.0\nmax = 1.0\n', "programs.a.backoff.max", "≥"),
    ('name = "x"\nscope = "galaxy"\n[programs.a]\nargv = ["p"]\n', "scope", "user, system"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\nstop_signal = "BOOM"\n', "programs.a.stop_signal", "TERM"),
    ('name = "x"\n[programs.a]\nargv = ["p"]\n[programs.a.env]\nA = 1\n', "programs.a.env.A", "string"),
])
def test_validation_errors_name_the_key(text: str, key: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        loads_spec(text, source="my.toml")
    err = info.value
    assert err.source == "my.toml"
    assert err.key == key, err.message
    assert fragment in err.message
    assert err.message.startswith(f"invalid spec my.toml: {key}")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        loads_spec("name = [", source="s.toml")
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(binary)


def test_nul_in_argv_is_refused() -> None:
    with pytest.raises(SpecError, match="NUL"):
        Program("p", ("python3", "a\x00b"))


def test_stop_signal_accepts_sig_prefix() -> None:
    spec = loads_spec('name = "x"\n[programs.a]\nargv = ["p"]\nstop_signal = "sigint"\n')
    assert spec.program("a").stop_signal == "INT"


def test_unknown_program_lookup_lists_known() -> None:
    spec = loads_spec(GOOD)
    with pytest.raises(SpecError, match="known: web, worker"):
        spec.program("nope")


def test_duplicate_program_names_refused() -> None:
    with pytest.raises(SpecError, match="duplicate"):
        Spec("x", (Program("a", ("p",)), Program("a", ("q",))))


def test_home_spec_cache_skips_the_toml_parser_and_never_goes_stale(tmp_path, dk_env) -> None:  # type: ignore[no-untyped-def]
    """The supervisor reads spec.cache.json (the parsed TOML and the text it came from) instead of
    importing a TOML parser; any difference from spec.toml's text means a real parse."""
    import json
    import subprocess
    import sys

    from daemonkit.spec import Backoff, Program, Spec, dump_spec, load_spec

    spec = Spec(name="c", programs=(Program("a", ("sleep", "5"), env={"K": "v"}, stop_grace=2.5,
                                            backoff=Backoff(min_uptime=0.5)), Program("b", ("true",))))
    toml, cache = tmp_path / "spec.toml", tmp_path / "spec.cache.json"
    dump_spec(spec, toml, cache=cache)
    assert json.loads(cache.read_text())["toml"] == toml.read_text()
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    code = ("import sys; from daemonkit.spec import load_spec; s = load_spec(sys.argv[1], cache=sys.argv[2]); "
            "print(s.programs[0].backoff.min_uptime, 'tomllib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(toml), str(cache)], capture_output=True, text=True, check=True,
                         env=dk_env)
    assert out.stdout.split() == ["0.5", "False"]
    assert load_spec(toml, cache=cache) == spec == load_spec(toml)
    # Edited by hand: the cache no longer matches, the TOML wins and the cache is rewritten.
    toml.write_text(toml.read_text().replace("stop_grace = 2.5", "stop_grace = 7.0"))
    edited = load_spec(toml, cache=cache)
    assert edited.programs[0].stop_grace == 7.0
    assert json.loads(cache.read_text())["toml"] == toml.read_text()
    # A damaged or tampered cache is ignored, never trusted over the TOML.
    for junk in ("not json", json.dumps({"format": 1, "toml": toml.read_text(), "data": {"name": "c"}})):
        cache.write_text(junk)
        assert load_spec(toml, cache=cache) == edited
