"""Hub-shaped model repos for the paper rehearsal: the real architectures' config.json at toy
width, sharded safetensors with their index as 7B repos ship them, and tokenizers whose special
tokens, ids, pad token (or its absence), padding side and chat template are the real repos'.

Weights are random (no real weights can be fetched here); the rehearsal checks that every job
runs, not what it scores. The facts of each repo, with their sources, are in REPO_SHAPES and
docs/rehearsal.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bilevel_unlearning.io import atomic_path

# 8 layers: the paper's RMU steers layer 7 and trains 5-7 (B WMDP/rmu/unlearn.py)
TOY_WIDTH = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 8}
TOY_HEADS = 4
TRAINED_VOCAB = 1024  # BPE merges learnt on the miniature text; the rest of the vocab is filler
SHARD_SIZE = "400KB"  # several shards and an index, as 7B repos ship


@dataclass(frozen=True)
class TokenizerShape:
    """What a repo's tokenizer files say, by the facts the pipeline depends on."""

    specials: Mapping[int, str]  # id -> token, every special token the repo defines
    bos: str
    eos: str
    unk: str | None
    pad: str | None
    padding_side: str | None  # None: the repo's config does not say (transformers: right)
    chat_template: str | None
    tokenizer_class: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # other tokenizer_config.json keys
    sentencepiece: bool = (
        False  # Llama-2/Mistral: "▁" word starts and byte fallback, not GPT-2 bytes
    )


@dataclass(frozen=True)
class RepoShape:
    config: Mapping[str, Any]  # config.json at full size; toy_config() narrows it
    tokenizer: TokenizerShape | None  # None: the repo ships no tokenizer
    sharded: bool = True  # 7B repos: model-0000k-of-0000n.safetensors + index; 1B: one file


# -- the real repos ------------------------------------------------------------------------------

LLAMA2_SPECIALS = {0: "<unk>", 1: "<s>", 2: "</s>"}

LLAMA2_TOKENIZER = TokenizerShape(
    specials=LLAMA2_SPECIALS,
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    pad=None,
    padding_side="right",
    chat_template=None,
    tokenizer_class="LlamaTokenizer",
    extra={
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "clean_up_tokenization_spaces": False,
    },
    sentencepiece=True,
)

LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "rope_scaling": None,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


def _llama3_specials() -> dict[int, str]:
    named = {
        128000: "<|begin_of_text|>",
        128001: "<|end_of_text|>",
        128004: "<|finetune_right_pad_id|>",
        128006: "<|start_header_id|>",
        128007: "<|end_header_id|>",
        128008: "<|eom_id|>",
        128009: "<|eot_id|>",
        128010: "<|python_tag|>",
    }
    reserved = (i for i in range(128002, 128256) if i not in named)
    return {**named, **{i: f"<|reserved_special_token_{n}|>" for n, i in enumerate(reserved)}}


# Llama-3.2-Instruct's chat template, as open-unlearning's TOFU models use it: a system header
# with the knowledge cutoff and the date, then one header per message, <|eot_id|> after each.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    '{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}\n'
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}"
    '{%- else %}{%- set system_message = "" %}{%- endif %}\n'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}'
    '{{- "Cutting Knowledge Date: December 2023\\n" }}'
    '{{- "Today Date: " + date_string + "\\n\\n" }}'
    '{{- system_message }}{{- "<|eot_id|>" }}\n'
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}\n"
)

LLAMA3_TOKENIZER = TokenizerShape(
    specials=_llama3_specials(),
    bos="<|begin_of_text|>",
    eos="<|eot_id|>",
    unk=None,
    pad=None,
    padding_side=None,
    chat_template=LLAMA3_CHAT_TEMPLATE,
    tokenizer_class="PreTrainedTokenizerFast",
    extra={
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": True,
    },
)

LLAMA32_1B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "hidden_act": "silu",
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}

ZEPHYR_CHAT_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

ZEPHYR_TOKENIZER = TokenizerShape(
    specials=LLAMA2_SPECIALS,
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    pad="</s>",
    padding_side=None,  # absent (the pipeline pads its own batches: the side never matters)
    chat_template=ZEPHYR_CHAT_TEMPLATE,
    tokenizer_class="LlamaTokenizer",
    extra={
        "additional_special_tokens": ["<unk>", "<s>", "</s>"],
        "legacy": True,
        "truncation_side": "left",
        "use_default_system_prompt": True,
        "spaces_between_special_tokens": False,
    },
    sentencepiece=True,
)

ZEPHYR_7B = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

# repo id (or a prefix ending in "*") -> its shape
REPO_SHAPES: dict[str, RepoShape] = {
    "meta-llama/Llama-2-7b-hf": RepoShape(LLAMA2_7B, LLAMA2_TOKENIZER),
    "muse-bench/MUSE-*": RepoShape(LLAMA2_7B, None),  # MUSE's targets ship no tokenizer
    "open-unlearning/tofu_Llama-3.2-1B-Instruct_*": RepoShape(
        LLAMA32_1B_INSTRUCT, LLAMA3_TOKENIZER
    ),
    "meta-llama/Llama-3.2-1B-Instruct": RepoShape(LLAMA32_1B_INSTRUCT, LLAMA3_TOKENIZER),
    "HuggingFaceH4/zephyr-7b-beta": RepoShape(ZEPHYR_7B, ZEPHYR_TOKENIZER),
}


def repo_shape(repo_id: str) -> RepoShape:
    for pattern, shape in REPO_SHAPES.items():
        if repo_id == pattern or (pattern.endswith("*") and repo_id.startswith(pattern[:-1])):
            return shape
    raise ValueError(
        f"the rehearsal knows no shape for the model repo {repo_id!r}; known: "
        f"{', '.join(REPO_SHAPES)} (data/rehearsal_models.py: REPO_SHAPES)"
    )


# -- toy-width models and real-shaped tokenizers -------------------------------------------------


def toy_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The real config narrowed to toy width; vocabulary, special ids, positions, RoPE and the
    heads' grouping (query heads per key-value head) stay as they are."""
    groups = config["num_attention_heads"] // config.get(
        "num_key_value_heads", config["num_attention_heads"]
    )
    toy = {**config, **TOY_WIDTH, "num_attention_heads": TOY_HEADS}
    toy["num_key_value_heads"] = max(1, TOY_HEADS // groups)
    if "head_dim" in config:
        toy["head_dim"] = TOY_WIDTH["hidden_size"] // TOY_HEADS
    toy["torch_dtype"] = "float32"
    return toy


def write_model_weights(folder: Path, config: Mapping[str, Any], seed: int, sharded: bool) -> None:
    """Random weights of the toy config: in shards with an index, or one file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    model_config = AutoConfig.for_model(config["model_type"], **fields)
    model_config.architectures = list(config["architectures"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config)
    shard_size = SHARD_SIZE if sharded else "50GB"
    model.save_pretrained(folder, max_shard_size=shard_size, safe_serialization=True)


def trained_bpe(texts: Iterable[str], shape: TokenizerShape, vocab_size: int) -> Any:
    """A byte-level BPE learnt on the texts whose special tokens sit at the real ids: low ids
    are trained in place, high ids (Llama-3's 128000+) follow filler tokens up to them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    low = [shape.specials[i] for i in sorted(shape.specials) if i < TRAINED_VOCAB]
    assert [i for i in sorted(shape.specials) if i < TRAINED_VOCAB] == list(range(len(low)))
    if shape.sentencepiece:  # Llama-2's ids 3-258 are the byte-fallback tokens <0x00>..<0xFF>
        tokenizer = Tokenizer(models.BPE(unk_token=shape.unk, byte_fallback=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tokenizer.decoder = decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        )
        low += [f"<0x{b:02X}>" for b in range(256)]
        alphabet: list[str] = []
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=shape.unk))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB,
        special_tokens=low,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    high = sorted(i for i in shape.specials if i >= TRAINED_VOCAB)
    if high:
        fillers = [f"<|filler_{i}|>" for i in range(tokenizer.get_vocab_size(), high[0])]
        tokenizer.add_tokens(fillers)
        tokenizer.add_special_tokens([shape.specials[i] for i in high])
        assert tokenizer.token_to_id(shape.specials[high[-1]]) == high[-1]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{shape.bos} $A",
        pair=f"{shape.bos} $A $B",
        special_tokens=[(shape.bos, tokenizer.token_to_id(shape.bos))],
    )
    return tokenizer


def write_tokenizer(folder: Path, shape: TokenizerShape, texts: Sequence[str]) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json as the repo has them."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained_bpe(texts, shape, TRAINED_VOCAB),
        bos_token=shape.bos,
        eos_token=shape.eos,
        unk_token=shape.unk,
        pad_token=shape.pad,
    )
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(shape.extra, tokenizer_class=shape.tokenizer_class, pad_token=shape.pad)
    for key, value in (
        ("padding_side", shape.padding_side),
        ("chat_template", shape.chat_template),
    ):
        config.pop(key, None)
        if value is not None:
            config[key] = value
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (folder / "chat_template.jinja").unlink(missing_ok=True)


def write_model_repo(
    mirror: Path, repo_id: str, texts: Sequence[str], seed: int, weights: bool = True
) -> Path:
    """One model repo in the mirror: toy weights (unless only its tokenizer is needed) and the
    tokenizer files the real repo ships, if any."""
    shape = repo_shape(repo_id)
    folder = mirror / repo_id
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        if weights:
            write_model_weights(tmp, toy_config(shape.config), seed, shape.sharded)
        else:
            (tmp / "config.json").write_text(json.dumps(dict(shape.config), indent=2) + "\n")
        if shape.tokenizer is not None:
            write_tokenizer(tmp, shape.tokenizer, texts)
    return folder
