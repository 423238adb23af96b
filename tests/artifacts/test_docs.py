"""Tutorial pages and their registration, on real git checkouts laid out like vllm-ascend."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from runners.artifacts.docs import TUTORIAL_SECTIONS_NUMBERED, headings, render_tutorial
from runners.artifacts.facts import collect
from runners.artifacts.target import (
    TargetRepoError,
    detect,
    load_mkdocs,
    mkdocs_nav_entries,
    register_mkdocs,
    register_model_list,
    register_nightly,
    register_toctree,
    toctree_entries,
)
from tests.artifacts import builders as b


def _facts(model: str = "Qwen/Qwen3-8B", **analysis: object):
    results = b.full_results(model)
    if analysis:
        results["analyze"] = b.analysis(**analysis)
    return collect(b.options(model), results)


def test_detects_mkdocs_main_even_with_the_conf_py_shim(mkdocs_repo: Path) -> None:
    assert (mkdocs_repo / "docs" / "source" / "conf.py").exists()
    target = detect(mkdocs_repo)
    assert (target.flavor, target.nav_file, target.version_macro) == (
        "mkdocs",
        "mkdocs.yml",
        "{{ vllm_ascend_version }}",
    )
    assert target.numbered_sections


def test_detects_sphinx_release_branch(sphinx_repo: Path) -> None:
    target = detect(sphinx_repo)
    assert (target.flavor, target.nav_file, target.version_macro) == (
        "sphinx",
        "docs/source/tutorials/models/index.md",
        "|vllm_ascend_version|",
    )


def test_detection_refuses_a_checkout_that_is_not_vllm_ascend(tmp_path: Path) -> None:
    with pytest.raises(TargetRepoError, match="not a vllm-ascend checkout"):
        detect(tmp_path)
    (tmp_path / "docs/source/tutorials/models").mkdir(parents=True)
    (tmp_path / "docs/source/tutorials/models/index.md").write_text("# Models\n")
    with pytest.raises(TargetRepoError, match="toctree"):
        detect(tmp_path)


def test_unnumbered_older_pages_switch_the_heading_style(sphinx_repo: Path) -> None:
    models = sphinx_repo / "docs/source/tutorials/models"
    for page in models.glob("Qwen*.md"):
        page.write_text(re.sub(r"^(#+) [\d.]+ ", r"\1 ", page.read_text(), flags=re.M))
    target = detect(sphinx_repo)
    assert not target.numbered_sections
    got = headings(render_tutorial(_facts(), target))
    assert got[1:] == [re.sub(r"^(#+) [\d.]+ ", r"\1 ", h) for h in TUTORIAL_SECTIONS_NUMBERED]


def test_tutorial_headings_follow_the_template_in_both_flavors(target_repo: Path) -> None:
    target = detect(target_repo)
    page = render_tutorial(_facts(), target)
    assert headings(page) == ["# Qwen3-8B", *TUTORIAL_SECTIONS_NUMBERED]
    # the sample pages of the checkout use the same outline
    sample = (target_repo / "docs/source/tutorials/models/Qwen3-8B.md").read_text()
    assert headings(sample)[1:] == list(TUTORIAL_SECTIONS_NUMBERED)


def test_mkdocs_tutorial_uses_mkdocs_syntax(mkdocs_repo: Path) -> None:
    page = render_tutorial(_facts(), detect(mkdocs_repo))
    assert page.index('=== "A3 series"') < page.index('=== "A2 series"')
    assert "quay.io/ascend/vllm-ascend:{{ vllm_ascend_version }}-a3" in page
    assert "!!! note" in page
    assert "|vllm_ascend_version|" not in page and "{tab-item}" not in page
    # tab content is indented 4 spaces, as pymdownx.tabbed requires
    block = page.split('=== "A2 series"', 1)[1].split("### 4.2", 1)[0]
    body = [ln for ln in block.splitlines() if ln.strip()]
    assert all(ln.startswith("    ") for ln in body), body


def test_sphinx_tutorial_uses_myst_syntax(sphinx_repo: Path) -> None:
    page = render_tutorial(_facts(), detect(sphinx_repo))
    assert "::::{tab-item} A3 series" in page and "::::{tab-item} A2 series" in page
    assert page.index("{tab-item} A3") < page.index("{tab-item} A2")
    assert page.count(":::::{tab-set}") == 1 and ":substitutions:" in page
    assert "quay.io/ascend/vllm-ascend:|vllm_ascend_version|-a3" in page
    assert "{{" not in page and "=== " not in page and "!!! note" not in page


def test_tutorial_carries_the_measured_facts(mkdocs_repo: Path) -> None:
    page = render_tutorial(_facts(), detect(mkdocs_repo))
    assert "vllm serve Qwen/Qwen3-8B \\\n  --served-model-name qwen3-8b" in page
    assert "--max-model-len 4096" in page and "--port 8000" in page
    assert "| gsm8k | exact_match,strict-match | 0.7650 |" in page
    assert "| ACLGraph | ✅ supported and verified |" in page
    assert "| Largest `--max-model-len` validated to start and serve | 32768 |" in page
    assert "--model local-chat-completions" in page and "--num_fewshot 5" in page
    assert "tests/e2e/models/configs/Qwen3-8B.yaml" in page


def test_cpu_profile_plumbing_stays_out_of_the_tutorial(mkdocs_repo: Path) -> None:
    results = b.full_results()
    results["real-gate"] = b.gate(
        "real-gate",
        "Qwen/Qwen3-8B",
        serve_argv=[
            "vllm", "serve", "/tmp/models/x", "--dtype", "float32", "--distributed-executor-backend", "uni",
            "--max-model-len", "256", "--enforce-eager", "--host", "127.0.0.1", "--port", "41234",
        ],
    )  # fmt: skip
    page = render_tutorial(collect(b.options(), results), detect(mkdocs_repo))
    serve = page.split("vllm serve", 1)[1].split("```", 1)[0]
    assert "float32" not in serve and "distributed-executor-backend" not in serve and "41234" not in serve
    assert "--enforce-eager" in serve and "--max-model-len 256" in serve
    assert "The validation run used `--enforce-eager`" in page  # a run setting, not a failure
    assert "did not pass" not in page
    results["real-gate"].data["ladder"] = [
        {"rung": "reproduce", "status": "failed", "signature": "AclmdlRICaptureEnd 507903"},
        {"rung": "enforce-eager", "status": "passed", "argv": ["vllm", "serve", "x", "--enforce-eager"]},
    ]
    page = render_tutorial(collect(b.options(), results), detect(mkdocs_repo))
    assert "`--enforce-eager` is part of the validated command: the graph-mode path did not pass" in page


def test_multimodal_tutorial_has_an_image_request(mkdocs_repo: Path) -> None:
    page = render_tutorial(_facts(multimodal=True), detect(mkdocs_repo))
    assert '"type": "image_url"' in page and "TORCHDYNAMO_DISABLE=1" in page


HOSTILE = (
    "x | y `z` <script>alert(1)</script> {{ config.secret }} {% raw %}\n## injected heading\n" + "w" * 3000
)


def test_hostile_text_cannot_break_the_tutorial(target_repo: Path) -> None:
    results = b.full_results()
    results["analyze"] = b.analysis(architecture=HOSTILE)
    results["features"].data["matrix"]["aclgraph"]["reason"] = HOSTILE
    results["features"].data["matrix"]["aclgraph"]["evidence"] = [{"kind": "log", "text": HOSTILE}]
    page = render_tutorial(collect(b.options(), results), detect(target_repo))
    assert "<script>" not in page
    assert "{{ config" not in page and "{% raw" not in page
    assert headings(page) == ["# Qwen3-8B", *TUTORIAL_SECTIONS_NUMBERED]
    row = next(ln for ln in page.splitlines() if ln.startswith("| ACLGraph"))
    assert row.count(" | ") == 2 and len(row) < 600  # one row, three cells, clipped


# ------------------------------------------------------------------------------- registration


def test_mkdocs_nav_registration_adds_one_line_and_keeps_the_rest(mkdocs_repo: Path) -> None:
    text = (mkdocs_repo / "mkdocs.yml").read_text()
    new = register_mkdocs(text, "Foo-7B.md")
    old_lines, new_lines = text.splitlines(), new.splitlines()
    assert len(new_lines) == len(old_lines) + 1
    added = [ln for ln in new_lines if ln not in old_lines]
    assert added == ["        - tutorials/models/Foo-7B.md"]
    i = new_lines.index(added[0])
    assert new_lines[i - 1].strip() == "- tutorials/models/Qwen3-30B-A3B.md"
    assert new_lines[:i] + new_lines[i + 1 :] == old_lines
    nav = load_mkdocs(new)["nav"]
    model_tutorials = nav[1]["Getting Started"][2]["Model Tutorials"]
    assert model_tutorials[-1] == "tutorials/models/Foo-7B.md"
    assert "!ENV" in new and "!!python/name:" in new  # tags survive untouched
    assert register_mkdocs(new, "Foo-7B.md") == new  # idempotent


def test_mkdocs_registration_without_trailing_newline_and_with_labels() -> None:
    text = (
        "site_name: x\nnav:\n  - Getting Started:\n    - Model Tutorials:\n"
        "      - tutorials/models/index.md\n      - Qwen: tutorials/models/Qwen3-8B.md"
    )
    new = register_mkdocs(text, "Foo.md")
    assert mkdocs_nav_entries(new)[-1] == "tutorials/models/Foo.md"
    assert register_mkdocs(register_mkdocs(text, "Qwen3-8B.md"), "Qwen3-8B.md") == text
    with pytest.raises(TargetRepoError, match="nav"):
        register_mkdocs("site_name: x\n", "Foo.md")


def test_toctree_registration(sphinx_repo: Path) -> None:
    index = sphinx_repo / "docs/source/tutorials/models/index.md"
    text = index.read_text()
    new = register_toctree(text, "Foo-7B.md")
    assert toctree_entries(new) == ["Qwen3-8B.md", "Qwen3-30B-A3B.md", "Foo-7B.md"]
    assert new.replace("Foo-7B.md\n", "") == text
    assert register_toctree(new, "Foo-7B.md") == new
    plain = "# M\n\n```{toctree}\n:maxdepth: 1\nqwen\nllama\n```\n"
    assert toctree_entries(register_toctree(plain, "Foo.md"))[-1] == "Foo"


def test_nightly_and_model_list_entries(mkdocs_repo: Path) -> None:
    nightly = mkdocs_repo / ".github/workflows/configs/nightly_config.yaml"
    text = nightly.read_text()
    new = register_nightly(text, "Foo-7B", tp=2)
    data = yaml.safe_load(new)
    groups = data["a2"]["accuracy"]["pr_only"]
    assert groups[1]["model_list"][-1] == "Foo-7B"  # the a2b3-4 group: fewest NPUs >= 2
    assert len(new.splitlines()) == len(text.splitlines()) + 1
    assert new.startswith("# Single source of truth")  # comments kept
    assert register_nightly(new, "Foo-7B", tp=2) == new
    one = yaml.safe_load(register_nightly(text, "Bar", tp=1, section="nightly"))
    assert one["a2"]["accuracy"]["nightly"][0]["model_list"][-1] == "Bar"
    with pytest.raises(TargetRepoError, match=r"no a2\.accuracy\.pr_only group runs on >= 16"):
        register_nightly(text, "Big", tp=16)

    lst = mkdocs_repo / ".github/workflows/misc/model_dataset_list.json"
    text = lst.read_text()
    new = register_model_list(text, "org/Foo-7B")
    assert json.loads(new)["models"][-1] == "org/Foo-7B"
    assert json.loads(new)["datasets"] == json.loads(text)["datasets"]
    assert len(new.splitlines()) == len(text.splitlines()) + 1
    assert register_model_list(new, "org/Foo-7B") == new
