"""Benchmark: hub pre-flight of a DeepSeek-V3-shaped repo (163 shards) at an injected RTT.

Builds the sparse synthetic checkpoint of bench_analyze.py (real names, shapes, dtypes, 688 GB
apparent, ~12 MB of headers), serves it from the hub stand-in (tests/standin/hub.py: a real
threaded HTTP server; LFS files redirected to a second "CDN" server, as the hub does) with
`--rtt` seconds added to every request on both hosts, and measures side by side:

  * `hub_preflight(strategy="exact")`: Range 0-7, then 8-(7+N) on the CDN URL, shards in parallel
  * `hub_preflight(strategy="speculative")`: Range 0-99999 first (one round trip, more bytes)
  * huggingface_hub's own `HfApi.get_safetensors_metadata` (what the issue suggests measuring)

Figures: requests (as the servers logged them), bytes the servers sent, bytes sent for shards /
header bytes (target <= 1.5), wall time (target <= 2 s at 50 ms RTT). The result of each
pre-flight is checked against the local `analyze()` of the same directory.

`--compare` measures before/after side by side in the same run: the exact strategy through
runners/analysis/hub.py as committed at `--before-rev` (loaded from git; its own defaults: 32
readers, index parsed after the pool) and through today's (`--workers`, default
DEFAULT_WORKERS), alternated `--reps` times (median, min-max: the machine is shared), and
asserts that both give the identical result (every field, the pinned revision included).

`--pool` measures huggingface_hub's shared client side by side: its default pool (20 keep-alive
connections, what hub.py used before `size_hub_pool`) and the pool sized to the readers, alternated
`--reps` times, each from a fresh client (cold: the first pre-flight of a process) and then once
more on the same client (warm); figures: TCP connections the stand-in accepted (hub / CDN) and
wall time, with `--connect-rtts` RTTs (default 2: TCP + TLS 1.3) added by the stand-in to each new
connection, which is what a new connection costs on the real hub (loopback alone makes it free).

`--nodelay` serves with TCP_NODELAY: the stand-in (http.server) writes the response head and
body in two sends, so Nagle holds the body until the client's delayed ACK (~40 ms) on every
request, on top of `--rtt`; a real hub/CDN does not stall like that.

Run:  .venv/bin/python benchmarks/bench_hub_preflight.py [--compare | --pool] [--reps 5] [--nodelay]
      [--rtt 0.05] [--workers N] [--shards 163]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_analyze import build  # noqa: E402

from runners.analysis import analyze  # noqa: E402
from runners.analysis.hub import DEFAULT_WORKERS, HubStats, hub_preflight  # noqa: E402
from runners.analysis.registry import Registries  # noqa: E402

REPO_ID = "deepseek-ai/DeepSeek-V3-synthetic"
#: the committed runners/analysis/hub.py before the issue-11 speed-up (32 readers, index parsed
#: after the pool); `--compare` loads that file from git and runs it next to the current one
BEFORE_REV = "123a81c"
#: the stand-in's own main with Nagle off for its handlers (a benchmark knob; argv, no shell)
NODELAY_MAIN = (
    "import sys; import tests.standin.hub as h; "
    "h._Handler.disable_nagle_algorithm = True; sys.exit(h.main(sys.argv[1:]))"
)


def comparable(result: Any) -> dict[str, Any]:
    d = result.model_dump(mode="json")
    for key in ("model_path", "hub_id", "revision", "served_model_name"):
        d.pop(key, None)
    return d


class RemoteHub:
    """The stand-in in its own process (the hub is another machine: it must not share our GIL)."""

    def __init__(self, root: Path, cdn: bool, nodelay: bool = False) -> None:
        import subprocess

        start = ["-c", NODELAY_MAIN] if nodelay else ["-m", "tests.standin.hub"]
        argv = [sys.executable, *start, "--repo", f"{REPO_ID}={root}"]
        self.proc = subprocess.Popen(
            [*argv, *(["--cdn"] if cdn else [])], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        import httpx

        # one kept-alive connection for the control calls, so they do not add to the counts
        self.client = httpx.Client(timeout=30)

    def control(self, path: str) -> Any:
        r = self.client.get(self.url + path)
        r.raise_for_status()
        return r.json() if r.content else None

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def run(hub: RemoteHub, fn: Any) -> tuple[Any, float, int, int, int]:
    """(result, wall s, requests, bytes sent, bytes sent for *.safetensors), from the server's log."""
    hub.control("/_standin/log?reset=1")
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    reqs = [e for e in hub.control("/_standin/log?reset=1") if not e["path"].startswith("/api/agent")]
    shard_bytes = sum(e["body_bytes"] for e in reqs if e["path"].endswith(".safetensors"))
    return out, wall, len(reqs), sum(e["body_bytes"] for e in reqs), shard_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--shards", type=int, default=163)
    parser.add_argument("--no-cdn", action="store_true", help="serve shards from the hub host itself")
    parser.add_argument("--compare", action="store_true", help="the hub.py of --before-rev vs today's")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="git revision of the 'before' hub.py")
    parser.add_argument("--pool", action="store_true", help="default vs sized connection pool")
    parser.add_argument("--connect-rtts", type=float, default=2.0, help="--pool: RTTs per new connection")
    parser.add_argument("--reps", type=int, default=5, help="alternated runs per side (--compare, --pool)")
    parser.add_argument("--nodelay", action="store_true", help="stand-in with TCP_NODELAY (no Nagle)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    root = tmp / "DeepSeek-V3-synthetic"
    root.mkdir()
    hub: RemoteHub | None = None
    try:
        facts = build(root, args.shards)
        regs = Registries(None, None, None)
        t0 = time.perf_counter()
        local = analyze(root, registries=regs)
        local_s = time.perf_counter() - t0
        hub = RemoteHub(root, cdn=not args.no_cdn, nodelay=args.nodelay)
        # warm up imports and the connection pool (not counted)
        hub_preflight(REPO_ID, endpoint=hub.url, registries=regs, workers=args.workers)
        hub.control(f"/_standin/latency?s={args.rtt}")
        if args.compare:
            return compare(hub, facts, local, regs, args, tmp)
        if args.pool:
            return pool_compare(hub, facts, local, regs, args)
        rows = []
        splits = {}
        for label, strategy in (
            ("hub_preflight exact (0-7, 8-7+N)", "exact"),
            ("hub_preflight speculative (0-99999)", "speculative"),
        ):
            stats = HubStats()
            res, wall, n, sent, shard = run(
                hub,
                lambda s=strategy, st=stats: hub_preflight(
                    REPO_ID, endpoint=hub.url, registries=regs, workers=args.workers, strategy=s, stats=st
                ),
            )
            assert comparable(res) == comparable(local), "hub result differs from the local analysis"
            rows.append((label, wall, n, sent, shard))
            splits[label] = (stats.fetch_s, stats.parse_s)
        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub.url)
        md, wall, n, sent, shard = run(hub, lambda: api.get_safetensors_metadata(REPO_ID))
        assert len(md.files_metadata) == facts["shards"]
        rows.append(("huggingface_hub get_safetensors_metadata", wall, n, sent, shard))
        hb = facts["header_bytes"]
        gb = facts["apparent_bytes"] / 1e9
        print(
            f"repo: {facts['shards']} shards, {facts['tensors']} tensors, {gb:.1f} GB apparent; "
            f"header bytes {hb:,}; metadata (config + index) {facts['metadata_bytes']:,}"
        )
        where = "hub" if args.no_cdn else "hub and CDN"
        print(
            f"injected RTT {args.rtt * 1000:.0f} ms per request on {where}; {args.workers} parallel readers"
        )
        print(f"local analyze() of the same directory (same parsing, no HTTP): {local_s:.2f} s\n")
        print(
            f"{'reader':<44}{'wall s':>8}{'HTTP s':>8}{'requests':>10}{'bytes sent':>14}"
            f"{'shards/headers':>16}"
        )
        for label, wall, n, sent, shard in rows:
            http_s = f"{splits[label][0]:.2f}" if label in splits else "-"
            print(f"{label:<44}{wall:>8.2f}{http_s:>8}{n:>10}{sent:>14,}{shard / hb:>16.3f}")
        exact = rows[0]
        print(
            f"\ntargets (exact): shard bytes / header bytes <= 1.5 -> {exact[4] / hb:.3f}; "
            f"wall <= 2 s -> {exact[1]:.2f} s (HTTP part {splits[exact[0]][0]:.2f} s)"
        )
        return 0 if exact[4] / hb <= 1.5 and exact[1] <= 2.0 else 1
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def module_at(rev: str, path: str, tmp: Path) -> Any:
    """`path` as committed at `rev`, imported under its own name (git through argv, no shell)."""
    import importlib.util
    import subprocess

    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    file = tmp / f"before_{rev}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(f"before_{rev}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def compare(hub: RemoteHub, facts: dict[str, Any], local: Any, regs: Registries, args: Any, tmp: Path) -> int:
    """Before/after in one run, alternated, each with its own defaults; results must be identical."""
    before = module_at(args.before_rev, "runners/analysis/hub.py", tmp)
    before.hub_preflight(REPO_ID, endpoint=hub.url, registries=regs)  # warm-up, not counted
    sides = (
        (
            f"before ({args.before_rev}, {before.DEFAULT_WORKERS} readers)",
            before.hub_preflight,
            before.HubStats,
        ),
        (f"after ({args.workers} readers)", hub_preflight, HubStats),
    )
    walls: dict[str, list[float]] = {label: [] for label, _, _ in sides}
    https: dict[str, list[float]] = {label: [] for label, _, _ in sides}
    seen: dict[str, tuple[int, int]] = {}
    reference: dict[str, Any] | None = None
    for _ in range(args.reps):
        for label, preflight, stats_type in sides:
            stats = stats_type()
            extra = {} if preflight is not hub_preflight else {"workers": args.workers}
            res, wall, n, _sent, shard = run(
                hub,
                lambda f=preflight, st=stats, kw=extra: f(
                    REPO_ID, endpoint=hub.url, registries=regs, stats=st, **kw
                ),
            )
            full = res.model_dump(mode="json")
            reference = full if reference is None else reference
            assert full == reference, f"{label}: result differs from the other side"
            assert comparable(res) == comparable(local), "hub result differs from the local analysis"
            walls[label].append(wall)
            https[label].append(stats.fetch_s)
            seen[label] = (n, shard)
    hb = facts["header_bytes"]
    print(
        f"repo: {facts['shards']} shards, header bytes {hb:,}; injected RTT {args.rtt * 1000:.0f} ms; "
        f"stand-in {'TCP_NODELAY' if args.nodelay else 'as is (Nagle + delayed ACK per request)'}; "
        f"{args.reps} alternated runs per side; results identical (every field)\n"
    )
    print(
        f"{'exact strategy':<34}{'wall median':>12}{'min-max':>14}{'HTTP median':>13}"
        f"{'requests':>10}{'shards/headers':>16}"
    )
    for label, _, _ in sides:
        w, h = walls[label], https[label]
        n, shard = seen[label]
        print(
            f"{label:<34}{statistics.median(w):>12.2f}{f'{min(w):.2f}-{max(w):.2f}':>14}"
            f"{statistics.median(h):>13.2f}{n:>10}{shard / hb:>16.3f}"
        )
    after = sides[1][0]
    ok = seen[after][1] / hb <= 1.5 and statistics.median(walls[after]) <= 2.0
    return 0 if ok else 1


def pool_compare(hub: RemoteHub, facts: dict[str, Any], local: Any, regs: Registries, args: Any) -> int:
    """Connections the stand-in accepted per pre-flight: huggingface_hub's default pool vs the sized
    one, each from a fresh shared client (cold) and once more on it (warm), alternated."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http as hf_http

    import runners.analysis.hub as hub_module

    sized = hub_module.size_hub_pool
    sides = (
        ("huggingface_hub default (20 keep-alive)", lambda workers: None),
        (f"sized ({args.workers} readers x {hub_module.ORIGINS_PER_READER} hosts)", sized),
    )
    hub.control(f"/_standin/latency?s={args.rtt}&connect={args.rtt * args.connect_rtts}")
    runs: dict[str, dict[str, list[tuple[int, int, float]]]] = {
        label: {"cold": [], "warm": []} for label, _ in sides
    }
    for _ in range(args.reps):
        for label, sizing in sides:
            set_client_factory(hf_http.default_client_factory)  # a fresh client, default pool
            hub_module.size_hub_pool = sizing  # type: ignore[assignment]
            try:
                for phase in ("cold", "warm"):
                    hub.control("/_standin/connections?reset=1")
                    res, wall, _n, _sent, _shard = run(
                        hub,
                        lambda: hub_preflight(
                            REPO_ID, endpoint=hub.url, registries=regs, workers=args.workers
                        ),
                    )
                    assert comparable(res) == comparable(local), "hub result differs from the local analysis"
                    got = hub.control("/_standin/connections?reset=1")
                    runs[label][phase].append((got.get("hub", 0), got.get("cdn", 0), wall))
            finally:
                hub_module.size_hub_pool = sized  # type: ignore[assignment]
    set_client_factory(hf_http.default_client_factory)
    print(
        f"repo: {facts['shards']} shards ({3 * facts['shards']} header requests: resolve, CDN 0-7, CDN "
        f"8-(7+N)); injected RTT {args.rtt * 1000:.0f} ms per request, {args.connect_rtts:g} RTTs per new "
        f"connection; {args.workers} readers; {args.reps} alternated "
        "runs per side; connections = TCP connections the stand-in accepted (median, min-max)\n"
    )
    print(f"{'pool':<42}{'run':<6}{'hub conns':>14}{'CDN conns':>14}{'wall median':>13}")
    for label, _ in sides:
        for phase in ("cold", "warm"):
            rows = runs[label][phase]
            cols = []
            for k in (0, 1):
                vals = [r[k] for r in rows]
                cols.append(f"{statistics.median(vals):.0f} ({min(vals)}-{max(vals)})")
            wall = statistics.median(r[2] for r in rows)
            print(f"{label:<42}{phase:<6}{cols[0]:>14}{cols[1]:>14}{wall:>13.2f}")
    worst = max(max(r[0], r[1]) for phase in runs[sides[1][0]].values() for r in phase)
    return 0 if worst <= args.workers else 1


if __name__ == "__main__":
    sys.exit(main())
