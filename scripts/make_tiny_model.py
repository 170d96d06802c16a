#!/usr/bin/env python3
"""Write a tiny random-weight Llama model that real vLLM (CPU) can serve.

    python3 make_tiny_model.py OUT_DIR [PEFT_WHEELS_DIR]

Needs torch, transformers and tokenizers, so it normally runs inside the vLLM test
image (see `scripts/build_images.py tiny-model`). With PEFT_WHEELS_DIR (wheels of peft
and accelerate, which the image lacks) it also writes a LoRA adapter for the model with
peft into OUT_DIR/lora/tiny-lora: rank 8 on q_proj and v_proj, randomly initialised (not
peft's no-op default), so the adapter's output differs from the base model's.

The tokenizer knows <think> and </think> (added tokens, not special, as in DeepSeek-R1's), so
vLLM's deepseek_r1 reasoning parser accepts it; OUT_DIR/think_chat_template.jinja is the chat
template with the answer opening a think block, as R1's own template does. The output is gibberish but every
serving path is real. Shapes follow DESIGN.md section 4: head_dim 64, because the
vLLM CPU attention rejects small head dims (16).

Idempotent: if OUT_DIR/config.json carries this script's generator hash, nothing is
done. The architecture facts are written to OUT_DIR/tiny_model.json and printed
as JSON on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ARCH = {
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
}
TARGET_VOCAB = 512
SEED = 0
# <|python_tag|> is Llama 3.1's tool-call marker: vLLM's llama3_json tool-call parser refuses a
# tokenizer without it, and the test catalog's tiny-a runs that parser.
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|python_tag|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


# R1's reasoning markers: vLLM's deepseek_r1 parser refuses a tokenizer without them.
THINK_TOKENS = ["<think>", "</think>"]
THINK_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("'<|assistant|>\n'", "'<|assistant|>\n<think>\n'")
LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
# What the adapter says it was trained on: the directory's name, as a local base model is named.
LORA_BASE = "tiny-model"


def generator_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def corpus() -> list[str]:
    words = (
        "the a an model server token cache memory vllm open webui controller compose "
        "docker container network health check ready chat completion user assistant "
        "system hello world tiny random weights llama layer head hidden vocab prompt "
        "answer question local test profile switch plan budget gpu cpu kv block"
    ).split()
    lines = []
    for i in range(400):
        n = 6 + (i * 7) % 11
        lines.append(" ".join(words[(i * 13 + j * 5) % len(words)] for j in range(n)) + ".")
    lines += ["<|user|>", "<|assistant|>", "<|system|>", "0123456789 !?,.:;()[]{}'\"-_/"]
    return lines


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)

    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=ARCH["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    hf_tok.add_tokens(THINK_TOKENS)
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def build_model(vocab_size: int, bos_id: int, eos_id: int, pad_id: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=vocab_size,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        initializer_range=0.02,
        **ARCH,
    )
    config.torch_dtype = "float32"  # transformers < 5 name
    config.dtype = "float32"
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        do_sample=False,
        max_length=ARCH["max_position_embeddings"],
    )
    n_params = sum(p.numel() for p in model.parameters())
    return model, n_params


def install_peft(wheels: Path) -> None:
    """peft and accelerate are not in the vLLM image; install their wheels (no network) aside."""
    import subprocess

    target = Path(tempfile.mkdtemp(prefix="peft-"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
            *map(str, sorted(wheels.glob("*.whl"))),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))


def write_lora(model, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(SEED + 1)
    config = LoraConfig(**LORA, init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(out, safe_serialization=True)
    # peft records the base model's name_or_path, empty for a model built in memory.
    written = out / "adapter_config.json"
    written.write_text(json.dumps({**json.loads(written.read_text()), "base_model_name_or_path": LORA_BASE}, indent=2))


def facts(vocab_size: int, n_params: int, gen_hash: str) -> dict:
    return {
        "architecture": "LlamaForCausalLM",
        "layers": ARCH["num_hidden_layers"],
        "hidden": ARCH["hidden_size"],
        "heads": ARCH["num_attention_heads"],
        "kv_heads": ARCH["num_key_value_heads"],
        "head_dim": ARCH["head_dim"],
        "intermediate": ARCH["intermediate_size"],
        "vocab": vocab_size,
        "max_position_embeddings": ARCH["max_position_embeddings"],
        "params": n_params,
        "dtype": "float32",
        "generator_hash": gen_hash,
    }


def make_readable(path: Path, owner: tuple[int, int] | None) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
        if owner is not None and os.geteuid() == 0:
            try:
                os.chown(p, *owner)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    peft_wheels = Path(argv[1]) if len(argv) == 2 else None
    gen_hash = generator_hash()
    cfg_file = out / "config.json"
    facts_file = out / "tiny_model.json"
    if cfg_file.exists() and facts_file.exists():
        try:
            if json.loads(cfg_file.read_text()).get("tiny_model_generator_hash") == gen_hash:
                print(facts_file.read_text().strip())
                return 0
        except ValueError:
            pass

    out.mkdir(parents=True, exist_ok=True)
    others = [p for p in out.iterdir() if not p.name.startswith(".tiny-")]
    if others and not facts_file.exists():
        print(f"refusing to write into {out}: not empty and not a tiny model dir", file=sys.stderr)
        return 1
    st = out.stat()
    owner = (st.st_uid, st.st_gid)  # files end up owned like the directory

    tok = build_tokenizer()
    vocab_size = len(tok)
    model, n_params = build_model(vocab_size, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    info = facts(vocab_size, n_params, gen_hash)

    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        (staging / "think_chat_template.jinja").write_text(THINK_CHAT_TEMPLATE)
        if peft_wheels is not None:
            install_peft(peft_wheels)
            write_lora(model, staging / "lora" / "tiny-lora")
            info["lora"] = {**LORA, "base_model_name_or_path": LORA_BASE, "path": "lora/tiny-lora"}
        cfg = json.loads((staging / "config.json").read_text())
        cfg["tiny_model_generator_hash"] = gen_hash
        (staging / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        (staging / "tiny_model.json").write_text(json.dumps(info, indent=2) + "\n")
        # Remove files of an older generation, then move the new ones in; config.json
        # goes last so that its presence marks a complete model.
        for old in out.iterdir():
            if old != staging and not old.name.startswith(".tiny-"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        names = sorted(p.name for p in staging.iterdir())
        names.sort(key=lambda n: n == "config.json")
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    make_readable(out, owner)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
