"""Every file under deploy/ parses, and deploy/README.md names what an operator must create."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import manifests as m

YAML_FILES = sorted(p for p in m.DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
JSON_FILES = sorted(m.DEPLOY.rglob("*.json"))
ENV_EXAMPLES = sorted([*m.DEPLOY.glob("*.env.example"), *m.DEPLOY.glob("secrets.example/*.env")])


def _rel(p: Path) -> str:
    return str(p.relative_to(m.REPO))


def test_there_is_something_to_check() -> None:
    assert len(YAML_FILES) >= 10 and JSON_FILES and ENV_EXAMPLES


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    docs = m.load_yaml_docs(path)
    assert docs and all(isinstance(d, dict) for d in docs), path


@pytest.mark.parametrize("path", JSON_FILES, ids=_rel)
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


@pytest.mark.parametrize("path", ENV_EXAMPLES, ids=_rel)
def test_env_examples_parse(path: Path) -> None:
    assert m.parse_env_file(path)


def _yamllint(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("yamllint", path=str(Path(sys.executable).parent))
    if exe is None:
        raise RuntimeError("yamllint is missing: install the dev extra (pip install -e '.[dev]')")
    config = m.DEPLOY / ".yamllint.yaml"
    argv = [exe, "--strict", "-f", "parsable", "-c", str(config), *map(str, paths)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_yamllint_finds_nothing() -> None:
    """Includes duplicate keys, which PyYAML would drop silently (a second `env:` loses settings)."""
    out = _yamllint(m.DEPLOY)
    assert out.returncode == 0, out.stdout + out.stderr


def test_yamllint_is_able_to_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  ADAPT_BOT_LABEL: a\n  ADAPT_BOT_LABEL: b\n", encoding="utf-8")
    out = _yamllint(bad)
    assert out.returncode != 0 and "key-duplicates" in out.stdout


def test_readme_names_every_secret_and_key_the_manifests_reference() -> None:
    readme = (m.DEPLOY / "README.md").read_text(encoding="utf-8")
    refs: set[tuple[str, str]] = set()
    for w in m.workloads():
        spec = m.pod_spec(w)
        for c in spec["containers"]:
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
        for vol in spec.get("volumes", []):
            for item in vol.get("secret", {}).get("items", []):
                refs.add((vol["secret"]["secretName"], item["key"]))
    assert refs
    for name, key in refs:
        pattern = rf"kubectl[^\n]*create secret generic {re.escape(name)}\b[^`]*{re.escape(key)}"
        assert re.search(pattern, readme, re.S), f"deploy/README.md does not show how to create {name}/{key}"
