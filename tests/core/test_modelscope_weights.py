"""Weights from ModelScope on the runner (runners.weights_modelscope through
runners.weights.ensure_weights and runners.pipeline.resolve_model_path) against the ModelScope
stand-in, with the real `modelscope` SDK pointed at it by MODELSCOPE_ENDPOINT: the pinned
revision into the shared cache, one download per revision across concurrent processes, resume
after a dropped connection and after a killed job, disk space checked first, the token message,
and the hub and the org as parts of the identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runners.model_ref import parse_model_ref, write_provenance
from runners.weights import WeightsError, download, ensure_weights
from runners.weights_modelscope import download as ms_download
from runners.weights_modelscope import snapshot_dir
from tests.analysis.ckpt import write_config, write_shard
from tests.analysis.conftest import REPO
from tests.standin.hub import HubStandin
from tests.standin.modelscope import ModelScopeStandin

SHARD = "model.safetensors"
GRANTED = "ms-weights-test-token-0123456789"  # a test value the stand-in grants


@pytest.fixture(scope="module")
def ms() -> Iterator[ModelScopeStandin]:
    with ModelScopeStandin(cdn=True) as h:
        yield h


@pytest.fixture(autouse=True)
def _env(ms: ModelScopeStandin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN", "MODELSCOPE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms.url)
    monkeypatch.setenv("ADAPT_BOT_MODEL_CACHE", str(tmp_path / "cache"))
    yield
    ms.state.faults.clear()
    ms.state.cuts.clear()
    ms.set_latency(0)
    ms.reset_log()


def make_repo(d: Path, mb: int = 3) -> Path:
    write_config(d)
    rng = np.random.default_rng(0)
    write_shard(d / SHARD, {"w": rng.standard_normal((mb * 1024 * 256,), dtype=np.float32)})
    (d / "README.md").write_text("not a job file\n")
    (d / "pytorch_model.bin").write_bytes(b"\0" * 1024)  # a duplicate format the job never needs
    return d


def shard_gets(ms: ModelScopeStandin) -> list[str | None]:
    return [
        e.range
        for e in ms.requests(lambda e: e.method == "GET" and e.host == "cdn" and e.path.endswith(SHARD))
    ]


def test_download_pinned_revision_then_cache_hit(ms: ModelScopeStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Tiny")
    repo = ms.add_repo("org/Tiny", src)
    lines: list[str] = []
    got = ms_download("org/Tiny", repo.sha, cache=tmp_path / "cache", progress=lines.append)
    assert got.source == "download" and got.revision == repo.sha
    assert got.path == snapshot_dir(tmp_path / "cache", "org/Tiny", repo.sha)
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    assert not (got.path / "README.md").exists() and not (got.path / "pytorch_model.bin").exists()
    assert any("downloading 2 files" in ln for ln in lines) and any("downloaded" in ln for ln in lines)
    assert not any(e.authorization for e in ms.requests(lambda e: e.host == "cdn"))
    ms.reset_log()
    again = ms_download("org/Tiny", repo.sha, cache=tmp_path / "cache")
    assert again.source == "cache" and again.path == got.path
    assert ms.requests() == []  # a finished revision costs no request at all


def test_a_branch_is_pinned_and_reported(ms: ModelScopeStandin, tmp_path: Path) -> None:
    repo = ms.add_repo("org/Pin", make_repo(tmp_path / "src" / "Pin", mb=1))
    lines: list[str] = []
    got = ms_download("org/Pin", None, cache=tmp_path / "cache", progress=lines.append)
    assert got.revision == repo.sha and any(f"is {repo.sha[:12]}" in ln for ln in lines)
    assert got.path.name == repo.sha


def resolve_in_subprocess(
    ms: ModelScopeStandin, model: str, revision: str, models_root: Path, cache: Path
) -> subprocess.Popen[str]:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runners.contracts import JobOptions\n"
        "from runners.pipeline import resolve_model_path\n"
        "p = resolve_model_path(JobOptions(model=sys.argv[1], revision=sys.argv[2]), Path(sys.argv[3]),\n"
        "                       progress=lambda line: print('PROGRESS', line, flush=True))\n"
        "print('PATH', p, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELSCOPE_"))}
    env.update(
        MODELSCOPE_ENDPOINT=ms.url,
        MODELSCOPE_CACHE=str(cache.parent / "ms-home"),
        HF_ENDPOINT="http://127.0.0.1:9",  # Hugging Face must not be asked for a ModelScope model
        ADAPT_BOT_MODEL_CACHE=str(cache),
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, model, revision, str(models_root)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_jobs_download_a_revision_once(ms: ModelScopeStandin, tmp_path: Path) -> None:
    repo = ms.add_repo("org/Shared", make_repo(tmp_path / "src" / "Shared"))
    root = tmp_path / "models"
    root.mkdir()
    cache = tmp_path / "cache"
    ms.set_latency(0.15)  # long enough that the two runs overlap
    procs = [resolve_in_subprocess(ms, "modelscope:org/Shared", repo.sha, root, cache) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {ln.split(" ", 1)[1] for out, _ in outs for ln in out.splitlines() if ln.startswith("PATH ")}
    assert paths == {str(snapshot_dir(cache, "org/Shared", repo.sha))}
    assert len(shard_gets(ms)) == 1  # one transfer of the weights, not two
    assert any("waiting" in out for out, _ in outs)  # the second job waited for the first


CUT = 5_000_000


def test_resume_after_a_dropped_connection(ms: ModelScopeStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Drop", mb=12)
    repo = ms.add_repo("org/Drop", src)
    ms.cut(rf"/{SHARD}$", after=CUT)
    got = ms_download("org/Drop", repo.sha, cache=tmp_path / "cache")
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    ranges = shard_gets(ms)
    assert len(ranges) == 2 and ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and int(ranges[1][6:].rstrip("-")) > 0
    size = (src / SHARD).stat().st_size
    sent = sum(e.body_bytes for e in ms.requests(lambda e: e.host == "cdn" and e.path.endswith(SHARD)))
    assert sent < size + CUT // 2  # what arrived before the cut was not fetched again


def test_resume_after_the_job_was_killed(ms: ModelScopeStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Killed", mb=12)
    repo = ms.add_repo("org/Killed", src)
    cache = tmp_path / "cache"
    root = tmp_path / "models"
    root.mkdir()
    ms.cut(rf"/{SHARD}$", after=CUT, stall_s=30)  # the transfer stalls; the job is killed in it
    proc = resolve_in_subprocess(ms, "modelscope:org/Killed", repo.sha, root, cache)
    partial = snapshot_dir(cache, "org/Killed", repo.sha) / (SHARD + ".incomplete")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size >= CUT // 2):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    have = partial.stat().st_size
    assert have >= CUT // 2
    ms.state.cuts.clear()
    ms.reset_log()
    got = ms_download("org/Killed", repo.sha, cache=cache)
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    assert shard_gets(ms) == [f"bytes={have}-"]  # continued where the killed job stopped


def test_disk_space_is_checked_before_the_first_byte(ms: ModelScopeStandin, tmp_path: Path) -> None:
    src = tmp_path / "src" / "Huge"
    write_config(src)
    with open(src / SHARD, "wb") as fh:  # sparse: 10 TB apparent, a few bytes on disk
        fh.truncate(10 * 10**12)
    repo = ms.add_repo("org/Huge", src)
    with pytest.raises(WeightsError) as err:
        ms_download("org/Huge", repo.sha, cache=tmp_path / "cache")
    assert err.value.code == "disk-space" and "ADAPT_BOT_MODEL_CACHE" in err.value.message
    assert "10000.0 GB" in err.value.message
    assert not ms.requests(lambda e: e.host == "cdn")


@pytest.mark.parametrize(
    ("setup", "token", "code", "says"),
    [
        ("gated", None, "gated", "MODELSCOPE_API_TOKEN"),
        ("private", None, "gated", "needs a login"),
        ("public", "invalid-token", "bad-token", "MODELSCOPE_API_TOKEN"),
    ],
)
def test_access_errors_name_the_token(
    setup: str, token: str | None, code: str, says: str, ms: ModelScopeStandin, tmp_path: Path
) -> None:
    repo_id = f"org/W-{setup}"
    repo = ms.add_repo(
        repo_id,
        make_repo(tmp_path / "src" / "W", mb=1),
        gated=setup == "gated",
        private=setup == "private",
        granted={GRANTED},
    )
    with pytest.raises(WeightsError) as err:
        ms_download(repo_id, repo.sha, cache=tmp_path / "cache", token=token or False)
    assert err.value.code == code and says in err.value.message and not err.value.retryable
    if setup != "public":
        got = ms_download(repo_id, repo.sha, cache=tmp_path / "cache", token=GRANTED)
        assert (got.path / SHARD).is_file()
        assert not any(e.authorization for e in ms.requests(lambda e: e.host == "cdn"))


def test_a_transient_failure_in_the_transfer_is_retried(ms: ModelScopeStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Blip", mb=1)
    repo = ms.add_repo("org/Blip", src)
    ms.fail(rf"/{SHARD}$", status=503, count=1)
    got = ms_download("org/Blip", repo.sha, cache=tmp_path / "cache")
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    assert [e.status for e in ms.requests(lambda e: e.host == "cdn")] == [503, 200]


def test_an_outage_is_retryable(ms: ModelScopeStandin, tmp_path: Path) -> None:
    repo = ms.add_repo("org/Down", make_repo(tmp_path / "src" / "Down", mb=1))
    ms.fail(r"^/api/v1/models/org/Down/repo/files$", status=503, count=-1)
    with pytest.raises(WeightsError) as err:  # the listing: the SDK's own retries, then this
        ms_download("org/Down", None, cache=tmp_path / "cache")
    assert err.value.retryable and err.value.code == "unavailable"
    ms.state.faults.clear()
    ms.fail(rf"/{SHARD}$", status=503, count=-1)
    # the transfer: with the SDK's retries off (its MODELSCOPE_DOWNLOAD_MAX_RETRIES=0, so the
    # test does not wait for its backoff) the failed file comes back as FileDownloadError
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runners.weights import WeightsError\n"
        "from runners.weights_modelscope import download\n"
        "try:\n"
        "    download('org/Down', sys.argv[1], cache=Path(sys.argv[2]))\n"
        "except WeightsError as exc:\n"
        "    print(exc.code, exc.retryable)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSCOPE_")}
    env.update(MODELSCOPE_ENDPOINT=ms.url, MODELSCOPE_DOWNLOAD_MAX_RETRIES="0")
    env["MODELSCOPE_CACHE"] = str(tmp_path / "ms-home")
    out = subprocess.run(
        [sys.executable, "-c", script, repo.sha, str(tmp_path / "cache")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == ["unavailable", "True"], out.stderr[-2000:]


def test_hub_and_org_are_part_of_the_identity(ms: ModelScopeStandin, tmp_path: Path) -> None:
    """ModelScope's org/Same never runs on the /models/Same that holds Hugging Face's org/Same,
    nor on HF's cache entry for it; attacker/Same on ModelScope never on either."""
    src = make_repo(tmp_path / "src" / "Same", mb=1)
    root = tmp_path / "models"
    local = root / "Same"
    local.mkdir(parents=True)
    write_config(local)
    write_provenance(local, "org/Same")  # Hugging Face's (no source: the default)
    assert ensure_weights(parse_model_ref("org/Same"), models_root=root).source == "local"
    repo = ms.add_repo("org/Same", src)
    got = ensure_weights(parse_model_ref("modelscope:org/Same"), models_root=root, revision=repo.sha)
    assert got.source == "download" and got.path != local.resolve()
    cache = tmp_path / "cache"
    assert got.path == snapshot_dir(cache, "org/Same", repo.sha)
    # Hugging Face's download of org/Same at the same commit id is its own entry, not this one
    with HubStandin() as hf:
        hf.add_repo("org/Same", src, sha=repo.sha)
        hf_got = download("org/Same", repo.sha, cache=cache, endpoint=hf.url)
    assert hf_got.source == "download" and hf_got.path != got.path
    assert "models--org--Same" in str(hf_got.path)
    evil = ms.add_repo("attacker/Same", src)
    bad = ensure_weights(parse_model_ref("modelscope:attacker/Same"), models_root=root, revision=evil.sha)
    assert bad.source == "download" and "attacker--Same" in str(bad.path)
    # a marker that says the checkout is ModelScope's too makes it serve both
    write_provenance(local, "org/Same", source=["huggingface", "modelscope"])
    mine = ensure_weights(parse_model_ref("modelscope:org/Same"), models_root=root, revision=repo.sha)
    assert mine.source == "local" and mine.path == local.resolve()
