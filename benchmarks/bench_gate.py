"""Gate overhead: the bot's dummy gate vs a plain script running the same `vllm serve`.

A = `adapt-bot gate MODEL --profile cpu --stage dummy-gate --json` (the whole CLI: profile, lease,
    hygiene, start, READY poll, smoke, teardown, result JSON).
B = a plain script: start the SAME argv with the same environment, poll GET /v1/models every
    0.1 s, send one chat completion, stop the process group and wait for it to exit.
Same tiny model, alternating A/B pairs. Targets: median(A)/median(B) <= 1.10, and the time
from the log's ready line to the bot noticing READY <= 0.5 s.

    .venv/bin/python benchmarks/bench_gate.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners.demo.tiny import make_tiny_model  # noqa: E402
from runners.profile import load_profile  # noqa: E402
from runners.serve import group_members, pick_port  # noqa: E402


def run_bot(model: Path, work: Path) -> tuple[float, dict]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "adapt-bot"),
            "gate",
            str(model),
            "--profile",
            "cpu",
            "--stage",
            "dummy-gate",
            "--json",
            "--work",
            str(work),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bot gate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def run_plain(argv: list[str], env: dict[str, str], served: str) -> float:
    port = pick_port("127.0.0.1", 0)
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with httpx.Client(trust_env=False) as c:
            while True:
                if proc.poll() is not None:
                    raise SystemExit("plain server died")
                try:
                    if c.get(f"{base}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            r = c.post(
                f"{base}/v1/chat/completions",
                timeout=120,
                json={
                    "model": served,
                    "messages": [{"role": "user", "content": "say hi"}],
                    "temperature": 0,
                    "max_tokens": 16,
                },
            )
            assert r.status_code == 200, r.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        while group_members(proc.pid):
            time.sleep(0.05)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    model = make_tiny_model("llama-dummy")
    prof = load_profile("cpu")
    bot_walls: list[float] = []
    plain_walls: list[float] = []
    notice: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        env = {k: os.environ[k] for k in prof.serve.inherit_env if k in os.environ}
        # B reuses the argv of the latest bot run (same flags; only the port differs)
        for i in range(args.pairs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")  # ABBA: no first-mover advantage
            wall_a = wall_b = 0.0
            data: dict = {}
            for who in order:
                if who == "A":
                    wall_a, result = run_bot(model, Path(tmp) / f"a{i}")
                    data = result["data"]
                    argv, served = data["argv"], data["smoke"]["request"]["model"]
                    if data.get("notice_latency_s") is not None:
                        notice.append(data["notice_latency_s"])
                else:
                    scratch = Path(tmp) / f"b{i}-cache"
                    scratch.mkdir()
                    benv = dict(env)
                    benv.update(
                        {k: v.replace("{cache_root}", str(scratch)) for k, v in prof.serve.env.items()}
                    )
                    if i == 0 and order[0] == "B":
                        raise SystemExit("internal: the first pair must start with the bot run")
                    wall_b = run_plain(argv, benv, served)
            bot_walls.append(wall_a)
            plain_walls.append(wall_b)
            print(
                f"pair {i + 1} ({''.join(order)}): bot {wall_a:6.2f} s   plain {wall_b:6.2f} s   "
                f"ratio {wall_a / wall_b:5.3f}   notice {data.get('notice_latency_s')} s",
                flush=True,
            )
    ma, mb = statistics.median(bot_walls), statistics.median(plain_walls)
    ratios = [a / b for a, b in zip(bot_walls, plain_walls, strict=True)]
    print(
        f"median: bot {ma:.2f} s, plain {mb:.2f} s, ratio of medians {ma / mb:.3f}, "
        f"median pair ratio {statistics.median(ratios):.3f} (target <= 1.10)"
    )
    if notice:
        print(
            f"ready line -> bot noticed READY: median {statistics.median(notice):.3f} s, "
            f"max {max(notice):.3f} s (target <= 0.5 s)"
        )
    print(json.dumps({"bot_s": bot_walls, "plain_s": plain_walls, "ratio": ma / mb, "notice_s": notice}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
