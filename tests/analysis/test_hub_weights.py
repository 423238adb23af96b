"""Weights on the runner (runners/weights.py, runners.pipeline.resolve_model_path) against the hub
stand-in: download of the pinned revision into the shared cache, one download per revision across
concurrent processes, resume after a dropped connection and after a killed job, disk space
checked first, gated repos, and the org as part of the identity."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runners.model_ref import parse_model_ref, write_provenance
from runners.weights import JOB_PATTERNS, WeightsError, download, ensure_weights
from tests.analysis.ckpt import write_config, write_shard
from tests.analysis.conftest import REPO
from tests.standin.hub import HubStandin

SHARD = "model.safetensors"
GRANTED = "hf_weights_test_token_0123456789"  # a test value


@pytest.fixture(scope="module")
def hub() -> Iterator[HubStandin]:
    with HubStandin(cdn=True) as h:
        yield h


@pytest.fixture(autouse=True)
def _clean(hub: HubStandin) -> Iterator[None]:
    yield
    hub.state.faults.clear()
    hub.state.cuts.clear()
    hub.set_latency(0)
    hub.reset_log()


def make_repo(d: Path, mb: int = 3) -> Path:
    write_config(d)
    rng = np.random.default_rng(0)
    write_shard(d / SHARD, {"w": rng.standard_normal((mb * 1024 * 256,), dtype=np.float32)})
    (d / "README.md").write_text("not a job file\n")
    (d / "pytorch_model.bin").write_bytes(b"\0" * 1024)  # a duplicate format the job never needs
    return d


def shard_gets(hub: HubStandin) -> list[str | None]:
    return [
        e.range
        for e in hub.requests(lambda e: e.method == "GET" and e.path.endswith(SHARD) and e.host == "cdn")
    ]


def test_download_pinned_revision_then_cache_hit(hub: HubStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Tiny")
    repo = hub.add_repo("org/Tiny", src)
    lines: list[str] = []
    got = download("org/Tiny", repo.sha, cache=tmp_path / "cache", endpoint=hub.url, progress=lines.append)
    assert got.source == "download" and got.revision == repo.sha
    assert got.path.name == repo.sha and (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    assert not (got.path / "README.md").exists() and not (got.path / "pytorch_model.bin").exists()
    assert any("downloading 2 files" in ln for ln in lines) and any("downloaded" in ln for ln in lines)
    hub.reset_log()
    again = download("org/Tiny", repo.sha, cache=tmp_path / "cache", endpoint=hub.url)
    assert again.source == "cache" and again.path == got.path
    assert hub.requests() == []  # a finished revision costs no request at all


def test_branch_is_pinned_and_reported(hub: HubStandin, tmp_path: Path) -> None:
    repo = hub.add_repo("org/Pin", make_repo(tmp_path / "src" / "Pin", mb=1))
    lines: list[str] = []
    got = download("org/Pin", None, cache=tmp_path / "cache", endpoint=hub.url, progress=lines.append)
    assert got.revision == repo.sha and any(f"is {repo.sha[:12]}" in ln for ln in lines)


def resolve_in_subprocess(
    hub: HubStandin, model: str, revision: str, models_root: Path, cache: Path
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(cache.parent / "hf-home"), ADAPT_BOT_MODEL_CACHE=str(cache))
    return subprocess.Popen(
        [sys.executable, "-c", script, model, revision, str(models_root)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_jobs_download_a_revision_once(hub: HubStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Shared")
    repo = hub.add_repo("org/Shared", src)
    root = tmp_path / "models"
    root.mkdir()
    cache = tmp_path / "cache"
    hub.set_latency(0.15)  # long enough that the two runs overlap
    procs = [resolve_in_subprocess(hub, "org/Shared", repo.sha, root, cache) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {ln.split(" ", 1)[1] for out, _ in outs for ln in out.splitlines() if ln.startswith("PATH ")}
    assert paths == {str(cache / "models--org--Shared" / "snapshots" / repo.sha)}
    assert len(shard_gets(hub)) == 1  # one transfer of the weights, not two
    assert any("waiting" in out for out, _ in outs)  # the second job waited for the first


#: runners.weights.fetch_blob writes the body in pieces of this size; a resume continues after
#: the last piece on disk
PIECE = 1 << 20
CUT = 14_500_000


def test_resume_after_a_dropped_connection(hub: HubStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Drop", mb=24)
    repo = hub.add_repo("org/Drop", src)
    hub.cut(rf"/{SHARD}$", after=CUT)
    got = download("org/Drop", repo.sha, cache=tmp_path / "cache", endpoint=hub.url)
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    kept = CUT // PIECE * PIECE
    assert shard_gets(hub) == [None, f"bytes={kept}-"]
    size = (src / SHARD).stat().st_size
    sent = sum(e.body_bytes for e in hub.requests(lambda e: e.path.endswith(SHARD)))
    assert sent == size + (CUT - kept)  # only what was not on disk yet is sent again


def test_resume_after_the_job_was_killed(hub: HubStandin, tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src" / "Killed", mb=24)
    repo = hub.add_repo("org/Killed", src)
    root = tmp_path / "models"
    root.mkdir()
    cache = tmp_path / "cache"
    hub.cut(rf"/{SHARD}$", after=CUT, stall_s=20)
    proc = resolve_in_subprocess(hub, "org/Killed", repo.sha, root, cache)
    blobs = cache / "models--org--Killed" / "blobs"
    kept = CUT // PIECE * PIECE
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while time.monotonic() < deadline:
        partial = list(blobs.glob("*.adapt-bot-partial")) if blobs.is_dir() else []
        if partial and partial[0].stat().st_size >= kept:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the download never reached the stall point")
    proc.kill()  # the job dies mid-download (SIGKILL: no cleanup, the flock goes with it)
    proc.wait(10)
    assert partial[0].stat().st_size == kept
    hub.state.cuts.clear()
    got = download("org/Killed", repo.sha, cache=cache, endpoint=hub.url)
    assert (got.path / SHARD).read_bytes() == (src / SHARD).read_bytes()
    assert shard_gets(hub)[-1] == f"bytes={kept}-"  # continued, not started over
    assert not list(blobs.glob("*.adapt-bot-partial"))


def test_disk_space_is_checked_before_the_first_byte(hub: HubStandin, tmp_path: Path) -> None:
    src = tmp_path / "src" / "Huge"
    write_config(src)
    with open(src / SHARD, "wb") as fh:  # sparse: 10 TB apparent, a few bytes on disk
        fh.truncate(10 * 10**12)
    repo = hub.add_repo("org/Huge", src)
    with pytest.raises(WeightsError) as err:
        download("org/Huge", repo.sha, cache=tmp_path / "cache", endpoint=hub.url)
    assert err.value.code == "disk-space" and "ADAPT_BOT_MODEL_CACHE" in err.value.message
    assert "10000.0 GB" in err.value.message
    assert not hub.requests(lambda e: e.path.endswith(SHARD))


def test_gated_repo_gives_the_token_message(hub: HubStandin, tmp_path: Path) -> None:
    repo = hub.add_repo(
        "org/GatedW", make_repo(tmp_path / "src" / "GatedW", mb=1), gated=True, granted={GRANTED}
    )
    with pytest.raises(WeightsError) as err:
        download("org/GatedW", repo.sha, cache=tmp_path / "cache", endpoint=hub.url, token=False)
    assert err.value.code == "gated" and "HF_TOKEN" in err.value.message and not err.value.retryable
    got = download("org/GatedW", repo.sha, cache=tmp_path / "cache", endpoint=hub.url, token=GRANTED)
    assert (got.path / SHARD).is_file()
    assert not any(e.authorization for e in hub.requests(lambda e: e.host == "cdn"))


def test_hub_outage_is_retryable(hub: HubStandin, tmp_path: Path) -> None:
    hub.add_repo("org/Down", make_repo(tmp_path / "src" / "Down", mb=1))
    hub.fail(r"^/api/models/org/Down", status=503, count=-1)
    with pytest.raises(WeightsError) as err:
        download("org/Down", None, cache=tmp_path / "cache", endpoint=hub.url)
    assert err.value.retryable and err.value.code in ("unavailable", "unreachable")


def test_org_is_part_of_the_identity(hub: HubStandin, tmp_path: Path) -> None:
    """attacker-org/Tiny never runs on the local /models/Tiny that holds org/Tiny: it downloads."""
    src = make_repo(tmp_path / "src" / "Tiny2", mb=1)
    root = tmp_path / "models"
    local = root / "Tiny2"
    local.mkdir(parents=True)
    write_config(local)
    write_provenance(local, "org/Tiny2")
    mine = ensure_weights(parse_model_ref("org/Tiny2"), models_root=root)
    assert mine.source == "local" and mine.path == local.resolve()
    evil = hub.add_repo("attacker-org/Tiny2", src)
    got = ensure_weights(
        parse_model_ref("attacker-org/Tiny2"),
        models_root=root,
        revision=evil.sha,
        cache=tmp_path / "cache",
        endpoint=hub.url,
    )
    assert got.source == "download" and got.path != local.resolve()
    assert "models--attacker-org--Tiny2" in str(got.path)
    assert set(JOB_PATTERNS) >= {"*.safetensors", "*.json"}
