"""The pre-flight from ModelScope (runners.analysis.modelscope_hub, bot.preflight with
source="modelscope") against the ModelScope stand-in, a real HTTP server the real `modelscope`
SDK is pointed at by its own settings (MODELSCOPE_ENDPOINT / MODELSCOPE_API_TOKEN or the
arguments).

Parity: for the same files the result is `analyze()`'s, field by field, plus the pinned commit.
The server counts the bytes: a shard costs exactly its 8 + N header bytes, never weight bytes,
and the token never reaches the OSS/CDN host. Errors are ModelScope's, one clear message each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runners.analysis import AnalysisError, analyze
from runners.analysis.hub import HubError, HubStats
from runners.analysis.modelscope_hub import modelscope_preflight, pinned_commit
from runners.analysis.registry import Registries
from tests.analysis import conftest as analysis_fixtures
from tests.analysis.ckpt import FP8, dense_layer, raw_shard, write_config, write_index, write_shard
from tests.analysis.conftest import HF_CONFIGS
from tests.analysis.conftest import REPO as CHECKOUT
from tests.intake.conftest import stage_requests
from tests.intake.test_flow import label
from tests.intake.test_preflight import preflight_comments
from tests.plugins.standin import REPO
from tests.standin.modelscope import ModelScopeStandin, older_sha

# the analysis tests' session fixtures (real vLLM registry + a vllm-ascend tree), used here too
vllm_site = analysis_fixtures.vllm_site
vllm_registry_file = analysis_fixtures.vllm_registry_file
ascend_tree = analysis_fixtures.ascend_tree
real_registries = analysis_fixtures.real_registries

ADAPT_BOT = CHECKOUT / ".venv" / "bin" / "adapt-bot"
GRANTED = "ms-granted-test-token-0123456789"  # a test value the stand-in grants


@pytest.fixture(scope="module")
def ms() -> Iterator[ModelScopeStandin]:
    with ModelScopeStandin(cdn=True) as h:
        yield h


@pytest.fixture(autouse=True)
def _clean(ms: ModelScopeStandin, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield
    ms.state.faults.clear()
    ms.state.cuts.clear()
    ms.set_latency(0)
    ms.reset_log()


def comparable(result: Any) -> dict[str, Any]:
    d = result.model_dump(mode="json")
    for key in ("model_path", "hub_id", "revision"):
        d.pop(key)
    return d


def tiny_sharded(d: Path) -> dict[str, dict[str, Any]]:
    write_config(d)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": np.zeros((32, 64), np.float16),
            **dense_layer(0),
        },
        "model-00002-of-00002.safetensors": dense_layer(1),
    }
    for name, tensors in shards.items():
        write_shard(d / name, tensors)
    write_index(d, shards)
    (d / "README.md").write_text("# Tiny\n")
    return shards


@pytest.mark.parametrize("name", sorted(p.name for p in HF_CONFIGS.iterdir() if p.is_dir()))
def test_real_fixture_configs_give_the_local_result(
    name: str, ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / name
    shutil.copytree(HF_CONFIGS / name, d)
    repo = ms.add_repo(f"fixtures/{name}", d)
    local = analyze(d, registries=real_registries)
    remote = modelscope_preflight(f"fixtures/{name}", endpoint=ms.url, registries=real_registries)
    assert comparable(remote) == comparable(local)
    assert remote.revision == repo.sha and remote.hub_id == f"fixtures/{name}"


def test_defects_give_the_same_problems_and_no_weight_byte_is_read(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Tiny-Defects"
    shards = tiny_sharded(d)
    write_shard(d / "extra.safetensors", {"lm_head.weight": (np.zeros((8, 8), np.uint8), FP8)})
    raw_shard(d / "model-00002-of-00002.safetensors", b'{"a": 1', length=5000)
    (d / "generation_config.json").write_text("{not json")
    write_index(d, shards, extra={"model.norm.weight": "model-00001-of-00002.safetensors"})
    repo = ms.add_repo("org/Tiny-Defects", d)
    local = analyze(d, registries=real_registries)
    stats = HubStats()
    remote = modelscope_preflight(
        "org/Tiny-Defects", endpoint=ms.url, registries=real_registries, stats=stats
    )
    codes = {p.code for p in local.problems}
    assert {"header-truncated", "shard-not-in-index", "side-file-not-json", "tensor-not-in-header"} <= codes
    assert comparable(remote) == comparable(local)
    # README.md carries an older commit: the pin is the newest one the listing shows
    assert remote.revision == repo.sha != older_sha(repo)
    # every shard: one 0-7 and at most one 8-(7+N) read on the OSS host, nothing else
    for shard in ("model-00001-of-00002.safetensors", "extra.safetensors"):
        size = (d / shard).stat().st_size
        reads = ms.requests(lambda e, s=shard: e.host == "cdn" and e.path.endswith("/" + s))  # type: ignore[misc]
        n = int.from_bytes((d / shard).read_bytes()[:8], "little")
        assert [e.range for e in reads] == ["bytes=0-7", f"bytes=8-{7 + n}"]
        assert sum(e.body_bytes for e in reads) == 8 + n < size
    assert stats.header_bytes > 0 and stats.requests >= 1


def test_the_token_goes_to_modelscope_only(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Private"
    tiny_sharded(d)
    ms.add_repo("org/Private", d, private=True, granted={GRANTED})
    result = modelscope_preflight("org/Private", endpoint=ms.url, token=GRANTED, registries=real_registries)
    assert result.hub_id == "org/Private"
    hub_side = ms.requests(lambda e: e.host == "hub")
    assert hub_side and all(e.authorization for e in hub_side)
    cdn_side = ms.requests(lambda e: e.host == "cdn")
    assert cdn_side and not any(e.authorization for e in cdn_side)


def test_the_sdk_settings_choose_endpoint_and_token(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "Env"
    tiny_sharded(d)
    repo = ms.add_repo("org/Env", d, gated=True, granted={GRANTED})
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
    with pytest.raises(HubError) as err:
        modelscope_preflight("org/Env", registries=real_registries, token=False)
    assert err.value.code == "gated"
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", GRANTED)
    assert modelscope_preflight("org/Env", registries=real_registries).revision == repo.sha
    # the deprecated MODELSCOPE_DOMAIN still points the SDK (a bare host gets https://; here http)
    monkeypatch.delenv("MODELSCOPE_ENDPOINT")
    monkeypatch.setenv("MODELSCOPE_DOMAIN", ms.url)
    with pytest.warns(FutureWarning):
        assert modelscope_preflight("org/Env", registries=real_registries).revision == repo.sha


@pytest.mark.parametrize(
    ("setup", "token", "code", "says", "retryable"),
    [
        ("gated", GRANTED + "-other", "gated", "apply for access", False),
        ("gated", False, "gated", "MODELSCOPE_API_TOKEN", False),
        ("private", False, "gated", "needs a login", False),
        ("private", GRANTED + "-other", "not-found", "check the id", False),
        ("public", "invalid-token", "bad-token", "MODELSCOPE_API_TOKEN", False),
        ("missing", False, "not-found", "org and name", False),
    ],
)
def test_errors_say_what_to_do(
    setup: str,
    token: str | bool,
    code: str,
    says: str,
    retryable: bool,
    ms: ModelScopeStandin,
    real_registries: Registries,
    tmp_path: Path,
) -> None:
    repo_id = f"org/Err-{setup}"
    if setup != "missing":
        d = tmp_path / "Err"
        tiny_sharded(d)
        ms.add_repo(repo_id, d, gated=setup == "gated", private=setup == "private", granted={GRANTED})
    with pytest.raises(HubError) as err:
        modelscope_preflight(repo_id, endpoint=ms.url, token=token, registries=real_registries)
    assert err.value.code == code and says in err.value.message and err.value.retryable is retryable
    assert GRANTED not in err.value.message and "invalid-token" not in err.value.message


def test_an_unknown_revision_is_named(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Rev"
    tiny_sharded(d)
    ms.add_repo("org/Rev", d)
    with pytest.raises(HubError) as err:
        modelscope_preflight("org/Rev", revision="v9.9", endpoint=ms.url, registries=real_registries)
    assert err.value.code == "revision-not-found" and "'v9.9'" in err.value.message


def test_outages_are_retryable_and_transient_ones_are_retried(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "Flaky"
    tiny_sharded(d)
    repo = ms.add_repo("org/Flaky", d)
    # one 503 on a header read: retried, the result is whole
    ms.fail(r"^/oss/.*model-00001-of-00002\.safetensors$", status=503, count=1)
    assert modelscope_preflight("org/Flaky", endpoint=ms.url, registries=real_registries).revision == repo.sha
    ms.fail(r"^/api/v1/models/org/Flaky/repo/files$", status=502, count=-1)
    with pytest.raises(HubError) as err:
        modelscope_preflight("org/Flaky", endpoint=ms.url, registries=real_registries)
    assert err.value.code == "unavailable" and err.value.retryable


def test_unreachable_endpoint_is_retryable(real_registries: Registries) -> None:
    with pytest.raises(HubError) as err:
        modelscope_preflight("org/X", endpoint="http://127.0.0.1:9", registries=real_registries, timeout=2)
    assert err.value.code == "unreachable" and err.value.retryable
    assert "MODELSCOPE_ENDPOINT" in err.value.message


def test_a_repo_without_config_is_not_analysable(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path
) -> None:
    d = tmp_path / "NoCfg"
    d.mkdir()
    (d / "README.md").write_text("x")
    (d / "model.gguf").write_bytes(b"\0" * 64)
    ms.add_repo("org/NoCfg", d)
    with pytest.raises(AnalysisError) as err:
        modelscope_preflight("org/NoCfg", endpoint=ms.url, registries=real_registries)
    assert err.value.code == "config-missing" and "modelscope:org/NoCfg@" in err.value.message


def test_pinned_commit_is_the_newest_file_commit() -> None:
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    files = [
        {"Path": "x", "Revision": a, "CommittedDate": 10},
        {"Path": "y", "Revision": b, "CommittedDate": 30},
        {"Path": "z", "Revision": "not-a-sha", "CommittedDate": 99},
        {"Path": "w", "Revision": c, "CommittedDate": "garbage"},
    ]
    assert pinned_commit(files, None) == b
    assert pinned_commit(files, "master") == b
    assert pinned_commit(files, c) == c  # a commit asked for is kept
    assert pinned_commit([], None) is None


def test_the_control_plane_comment_from_modelscope(
    ms: ModelScopeStandin, real_registries: Registries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bot.preflight.run_preflight with source="modelscope": the analysis comment, the pinned
    revision, the model card read from ModelScope; the HF endpoint it is given is not used."""
    from bot.preflight import run_preflight

    d = tmp_path / "Card"
    tiny_sharded(d)
    (d / "README.md").write_text("---\nmodel-index:\n- results: []\n---\n# Card\n")
    repo = ms.add_repo("org/Card", d)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
    out = run_preflight(
        "org/Card", source="modelscope", endpoint="http://127.0.0.1:9", registries=real_registries
    )
    assert out.revision == repo.sha and not out.retryable and out.result is not None
    assert f"### Pre-flight: `modelscope:org/Card` @ `{repo.sha[:12]}`" in out.body
    assert f"| read from | ModelScope at commit `{repo.sha[:12]}`" in out.body
    card = ms.requests(lambda e: e.range == f"bytes=0-{256 * 1024 - 1}")  # one bounded read
    assert [e.status for e in card] == [206], [(e.path, e.range, e.status) for e in ms.requests()]
    gone = run_preflight("org/Nope", source="modelscope", registries=real_registries)
    assert gone.stops and gone.error_code == "not-found" and "ModelScope" in gone.body
    assert json.dumps(gone.error_code)


@pytest.fixture
def ms_intake(ms: ModelScopeStandin, monkeypatch: pytest.MonkeyPatch, deps: Any) -> ModelScopeStandin:
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # Hugging Face must not be asked
    deps.settings = deps.settings.model_copy(update={"hub_preflight": True})
    return ms


def test_a_modelscope_issue_gets_its_preflight_from_modelscope(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    ms_intake: ModelScopeStandin,
    tmp_path: Path,
) -> None:
    """A labelled issue naming a modelscope.cn URL: the pre-flight comment within seconds, from
    ModelScope; the job keeps the hub in its model and pins ModelScope's commit."""
    gh = github_standin
    d = tmp_path / "ckpt"
    tiny_sharded(d)
    repo = ms_intake.add_repo("tiny-org/Tiny-MS", d)
    body = "Please support https://www.modelscope.cn/models/tiny-org/Tiny-MS/summary"
    n = int(gh.add_issue(REPO, "[New model] Tiny-MS", body)["number"])
    label(post, gh, n)
    outcomes = drain()
    assert "passed" in outcomes, outcomes
    (comment,) = preflight_comments(gh, n)
    assert "Qwen3ForCausalLM" in comment and "tiny-org/Tiny-MS" in comment
    job = deps.store.active_for(REPO, n)
    assert job.options.model == "modelscope:tiny-org/Tiny-MS"
    assert job.options.revision == repo.sha
    assert stage_requests(deps.redis) == [(job.id, "analyze", 1)]
    assert ms_intake.body_bytes() < 64 * 1024  # headers only


def test_a_gated_modelscope_model_fails_with_the_token_message(
    post: Callable[..., Any],
    github_standin: Any,
    deps: Any,
    drain: Callable[[], list[Any]],
    ms_intake: ModelScopeStandin,
    tmp_path: Path,
) -> None:
    gh = github_standin
    d = tmp_path / "ckpt"
    tiny_sharded(d)
    ms_intake.add_repo("tiny-org/Gated-MS", d, gated=True, granted={GRANTED})
    n = int(gh.add_issue(REPO, "[New model] Gated", "model: modelscope:tiny-org/Gated-MS")["number"])
    label(post, gh, n)
    outcomes = drain()
    assert any(str(o).startswith("failed: hub-gated") for o in outcomes), outcomes
    (comment,) = preflight_comments(gh, n)
    assert "MODELSCOPE_API_TOKEN" in comment and GRANTED not in comment
    assert deps.store.latest_for(REPO, n).state == "failed:analyze" and stage_requests(deps.redis) == []


def test_the_cli_analyses_a_modelscope_model_from_modelscope(
    ms: ModelScopeStandin, vllm_python: Path, tmp_path: Path
) -> None:
    """`adapt-bot analyze modelscope:org/name --json`: read from ModelScope, not from Hugging
    Face's repo of the same name, and not from a /models checkout that is Hugging Face's."""
    d = tmp_path / "src" / "Tiny-Cli"
    tiny_sharded(d)
    repo = ms.add_repo("org/Tiny-Cli", d)
    root = tmp_path / "models"
    shutil.copytree(d, root / "Tiny-Cli")
    (root / "Tiny-Cli" / ".adapt-bot-source").write_text('{"repo_id": "org/Tiny-Cli"}')  # HF's
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELSCOPE_"))}
    env = {
        **base,
        "MODELSCOPE_ENDPOINT": ms.url,
        "MODELSCOPE_CACHE": str(tmp_path / "ms-home"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "ADAPT_BOT_CPU_VLLM": str(vllm_python),
    }
    out = subprocess.run(
        [str(ADAPT_BOT), "analyze", "modelscope:org/Tiny-Cli", "--json", "--models-root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["revision"] == repo.sha and doc["hub_id"] == "org/Tiny-Cli"
    assert ms.requests(lambda e: e.path == "/api/v1/models/org/Tiny-Cli/repo/files")
