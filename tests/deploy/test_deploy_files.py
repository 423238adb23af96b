"""Every file under deploy/ parses, and deploy/README.md names what an operator must create."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

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


def test_yaml_has_no_duplicate_keys() -> None:
    """PyYAML keeps the last of two equal keys silently; a duplicated `env:` would drop settings."""

    class Strict(yaml.SafeLoader):
        pass

    def construct(loader: Strict, node: yaml.MappingNode) -> dict[object, object]:
        # Keys written in this mapping (a `<<` merge may be overridden on purpose; that is not a dupe).
        keys = [
            loader.construct_object(k, deep=True)
            for k, _v in node.value
            if k.tag != "tag:yaml.org,2002:merge"
        ]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise AssertionError(f"duplicate keys {dupes} at line {node.start_mark.line + 1}")
        loader.flatten_mapping(node)
        return dict(loader.construct_pairs(node, deep=True))

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct)
    for path in YAML_FILES:
        try:
            list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=Strict))
        except AssertionError as exc:
            raise AssertionError(f"{_rel(path)}: {exc}") from None


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
