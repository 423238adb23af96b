"""Generate a small git repository shaped like vllm-ascend, for tests and the README quick start.

Two layouts, because the real repository has both: `mkdocs` (main: mkdocs.yml nav, `=== "..."` tabs,
`{{ vllm_ascend_version }}`) and `sphinx` (release branches: conf.py + a `{toctree}` in
docs/source/tutorials/models/index.md, `|vllm_ascend_version|`). The e2e configs are the real ones
from tests/fixtures when available. Run `python -m runners.demo.sample_repo DIR [mkdocs|sphinx]`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_CONFIGS = REPO_ROOT / "tests" / "fixtures" / "vllm-ascend-e2e-configs"

SAMPLE_IDENTITY = ("Sample Maintainer", "maintainer@example.com")

# Real-looking mkdocs.yml: the parts that matter to adapt-bot (the `!ENV` tags and
# `!!python/name:` tags that plain YAML loaders refuse, and the nested Model Tutorials nav).
MKDOCS_YML = """\
# MkDocs configuration for the vLLM Ascend documentation.
site_name: !ENV [DOCS_SITE_NAME, 'vLLM Ascend']
site_url: !ENV [DOCS_SITE_URL, 'https://docs.vllm.ai/projects/ascend/en/latest/']
repo_url: https://github.com/vllm-project/vllm-ascend
edit_uri: edit/main/docs/source/

docs_dir: !ENV [DOCS_DIR, docs/source]
use_directory_urls: false

theme:
  name: material
  features:
    - content.tabs.link
    - content.code.copy

plugins:
  - search
  - macros:
      include_dir: !ENV [DOCS_MACROS_DIR, docs/source]
      on_undefined: keep

markdown_extensions:
  - admonition
  - pymdownx.details
  - pymdownx.superfences:
      custom_fences:
        - name: mermaid
          class: mermaid
          format: !!python/name:pymdownx.superfences.fence_code_format
  - pymdownx.tabbed:
      alternate_style: true

extra:
  # Version substitutions used by the macros plugin
  vllm_version: v0.22.1
  vllm_ascend_version: v0.22.1rc1

nav:
  - index.md
  - Getting Started:
    - getting_started.md
    - installation.md
    - Model Tutorials:
        - tutorials/models/index.md
        - tutorials/models/Qwen3-8B.md
        - tutorials/models/Qwen3-30B-A3B.md
    - Feature Tutorials:
        - tutorials/features/index.md
    - faqs.md
  - User Guide:
    - user_guide/index.md

# ---- Watch ----
watch:
  - docs/source
  - mkdocs.yml
"""

SPHINX_CONF = """\
# Sphinx configuration (release branch layout).
project = "vllm-ascend"
extensions = ["myst_parser", "sphinx_design", "sphinx_copybutton"]
myst_enable_extensions = ["colon_fence", "substitution"]
myst_substitutions = {
    "vllm_version": "v0.18.0",
    "vllm_ascend_version": "v0.18.0rc1",
}
"""

MAIN_CONF_SHIM = """\
# Not a Sphinx config: a JSON-output shim some tooling reads for the version strings.
import json

print(json.dumps({"vllm_ascend_version": "v0.22.1rc1"}))
"""

SPHINX_INDEX = """\
# Model Tutorials

This section provides tutorials for different models of vLLM Ascend.

:::{toctree}
:caption: Model Tutorials
:maxdepth: 1
Qwen3-8B.md
Qwen3-30B-A3B.md
:::
"""

MKDOCS_INDEX = """\
# Model Tutorials

This section provides tutorials for different models of vLLM Ascend.
"""


def _tutorial(name: str, hub_id: str, flavor: str) -> str:
    if flavor == "mkdocs":
        install = """=== "A3 series"

    ```bash
    export IMAGE=quay.io/ascend/vllm-ascend:{{ vllm_ascend_version }}-a3
    docker run --rm --name vllm-ascend --device /dev/davinci0 -it $IMAGE bash
    ```

=== "A2 series"

    ```bash
    export IMAGE=quay.io/ascend/vllm-ascend:{{ vllm_ascend_version }}
    docker run --rm --name vllm-ascend --device /dev/davinci0 -it $IMAGE bash
    ```
"""
    else:
        install = """:::::{tab-set}
:sync-group: install

::::{tab-item} A3 series
:sync: A3

```{code-block} bash
   :substitutions:

export IMAGE=quay.io/ascend/vllm-ascend:|vllm_ascend_version|-a3
docker run --rm --name vllm-ascend --device /dev/davinci0 -it $IMAGE bash
```

::::
::::{tab-item} A2 series
:sync: A2

```{code-block} bash
   :substitutions:

export IMAGE=quay.io/ascend/vllm-ascend:|vllm_ascend_version|
docker run --rm --name vllm-ascend --device /dev/davinci0 -it $IMAGE bash
```

::::
:::::
"""
    return f"""# {name}

## 1 Introduction

`{hub_id}` on Ascend NPUs with vLLM Ascend (sample page generated for tests).

## 2 Supported Features

Refer to [supported features](../../user_guide/support_matrix/supported_models.md).

## 3 Prerequisites

### 3.1 Model Weight

- `{hub_id}`: one Atlas 800 A2 node.

## 4 Installation

### 4.1 Docker Image Installation

{install}
### 4.2 Source Code Installation

Follow the [installation guide](../../installation.md).

## 5 Online Service Deployment

### 5.1 Single-Node Online Deployment

```shell
vllm serve {hub_id} --tensor-parallel-size 1 --port 8000
```

## 6 Functional Verification

```shell
curl http://localhost:8000/v1/models
```

## 7 Accuracy Evaluation

See `tests/e2e/models/configs/{name}.yaml`.

## 8 Performance Evaluation

Use `vllm bench serve`.

## 9 Performance Tuning

Defaults are fine.

## 10 FAQ

None yet.
"""


NIGHTLY_CONFIG = """\
# Single source of truth for the Nightly-A2 / Nightly-A3 test matrix (sample).
# Adding a new test case is just appending a `- name: ...` entry under the matching section.

a2:
  single_node:
    test_config:
      - name: qwen3-32b-int8
        os: linux-aarch64-a2b3-4
        config_file_path: Qwen3-32B-Int8-A2.yaml
  accuracy:
    nightly:
      - name: accuracy-group-1
        os: linux-aarch64-a2b3-1
        model_list:
          - Qwen3-8B
          - Qwen3-VL-8B-Instruct
          - Minitron-8B-Base
      - name: accuracy-group-3
        os: linux-aarch64-a2b3-2
        model_list:
          - Qwen3-30B-A3B
    pr_only:
      - name: pr-accuracy-group-1
        os: linux-aarch64-a2b3-1
        model_list:
          - Qwen3-8B-W8A8
      - name: pr-accuracy-group-2
        os: linux-aarch64-a2b3-4
        model_list:
          - Mixtral-8x7B-Instruct-v0.1

a3:
  single_node:
    test_config:
      - name: deepseek-r1-0528-w8a8
        os: linux-aarch64-nightly-a3-16
        config_file_path: DeepSeek-R1-0528-W8A8.yaml
"""

MODEL_DATASET_LIST = """\
{
    "models": [
      "Qwen/Qwen3-8B",
      "Qwen/Qwen3-30B-A3B",
      "Qwen/Qwen3-VL-8B-Instruct",
      "mistralai/Mixtral-8x7B-Instruct-v0.1",
      "nv-community/Minitron-8B-Base",
      "vllm-ascend/Qwen3-8B-W8A8"
    ],
    "datasets": [
      "vllm-ascend/gsm8k",
      "vllm-ascend/gsm8k-lite"
    ]
  }
"""

PR_TEMPLATE = """\
<!--  Thanks for sending a pull request! -->
### What this PR does / why we need it?
<!--
- Please clarify what changes you are proposing and why.
- Fixes #
-->

### Does this PR introduce _any_ user-facing change?
<!-- API, interface or other behavior changes. Documentation-only updates are not user-facing. -->

### How was this patch tested?
<!-- CI passed with new added/existing test; otherwise explain step by step. -->
"""

QWEN3_8B_FALLBACK = """\
model_name: "Qwen/Qwen3-8B"
model_type: "vllm"
hardware: "Atlas A2 Series"

serve:
  tensor_parallel_size: 1
  dtype: auto
  max_model_len: 4096
  gpu_memory_utilization: 0.8
  trust_remote_code: false
  enable_thinking: false

tasks:
- name: "gsm8k"
  metrics:
  - name: "exact_match,strict-match"
    value: 0.765
  - name: "exact_match,flexible-extract"
    value: 0.81

num_fewshot: 5
apply_chat_template: true
fewshot_as_multiturn: true
batch_size: "auto"
"""


def _git(repo: Path, *args: str) -> str:
    name, email = SAMPLE_IDENTITY
    env_args = ["-c", f"user.name={name}", "-c", f"user.email={email}", "-c", "commit.gpgsign=false"]
    out = subprocess.run(["git", *env_args, *args], cwd=repo, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def make_sample_repo(
    path: Path, flavor: Literal["mkdocs", "sphinx"], *, e2e_configs: Path | None = None
) -> Path:
    """Create (or overwrite) a vllm-ascend-shaped git repo at `path` with one initial commit."""
    if flavor not in ("mkdocs", "sphinx"):
        raise ValueError(f"flavor must be 'mkdocs' or 'sphinx', not {flavor!r}")
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    models = path / "docs" / "source" / "tutorials" / "models"
    _write(path / "README.md", "# vllm-ascend (sample checkout for adapt-bot)\n")
    _write(path / "docs" / "source" / "index.md", "# vLLM Ascend\n")
    _write(path / "docs" / "source" / "installation.md", "# Installation\n")
    _write(path / "docs" / "source" / "faqs.md", "# FAQs\n")
    if flavor == "mkdocs":
        _write(path / "mkdocs.yml", MKDOCS_YML)
        _write(path / "docs" / "source" / "conf.py", MAIN_CONF_SHIM)
        _write(models / "index.md", MKDOCS_INDEX)
    else:
        _write(path / "docs" / "source" / "conf.py", SPHINX_CONF)
        _write(models / "index.md", SPHINX_INDEX)
    _write(models / "Qwen3-8B.md", _tutorial("Qwen3-8B", "Qwen/Qwen3-8B", flavor))
    _write(models / "Qwen3-30B-A3B.md", _tutorial("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B", flavor))
    configs = path / "tests" / "e2e" / "models" / "configs"
    source = e2e_configs or FIXTURE_CONFIGS
    copied = 0
    if source.is_dir():
        for cfg in sorted(source.glob("*.yaml")):
            _write(configs / cfg.name, cfg.read_text(encoding="utf-8"))
            copied += 1
    if not copied:
        _write(configs / "Qwen3-8B.yaml", QWEN3_8B_FALLBACK)
    _write(path / ".github" / "workflows" / "configs" / "nightly_config.yaml", NIGHTLY_CONFIG)
    _write(path / ".github" / "workflows" / "misc" / "model_dataset_list.json", MODEL_DATASET_LIST)
    _write(path / ".github" / "PULL_REQUEST_TEMPLATE.md", PR_TEMPLATE)
    branch = "main" if flavor == "mkdocs" else "releases/v0.18.0"
    _git(path, "init", "-q", "-b", branch)
    _git(path, "add", "-A")
    _git(
        path,
        "commit",
        "-q",
        "-m",
        "Initial sample vllm-ascend layout\n\nSigned-off-by: Sample Maintainer <maintainer@example.com>",
    )
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2 or (len(args) == 2 and args[1] not in ("mkdocs", "sphinx")):
        print("usage: python -m runners.demo.sample_repo DIR [mkdocs|sphinx]", file=sys.stderr)
        return 2
    flavor: Literal["mkdocs", "sphinx"] = "sphinx" if len(args) == 2 and args[1] == "sphinx" else "mkdocs"
    repo = make_sample_repo(Path(args[0]), flavor)
    print(repo)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
