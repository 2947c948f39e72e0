"""The host-app docs build offline from the docstrings and stay in step with the public surface."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen_api():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_exists_and_is_documented() -> None:
    text, problems = _gen_api().render()
    assert problems == []
    assert "### `Daemon`" in text and "### `respawn_after_update`" in text and "### `Sandbox`" in text


def test_the_committed_reference_lists_the_same_names() -> None:
    text, _ = _gen_api().render()
    committed = (ROOT / "docs" / "api.md").read_text()
    headings = re.compile(r"^#{2,3} .*$", re.M)
    assert headings.findall(committed) == headings.findall(text), "run: python docs/gen_api.py"


def test_relative_links_in_the_host_app_docs_resolve() -> None:
    for doc in ("docs/host-apps.md", "docs/testing.md", "docs/api.md", "README.md", "examples/chatgateway/README.md"):
        path = ROOT / doc
        for target in re.findall(r"\]\(([^)#:]+)\)", path.read_text()):
            assert (path.parent / target).exists(), f"{doc} links to {target}, which does not exist"
