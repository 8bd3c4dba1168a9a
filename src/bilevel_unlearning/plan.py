"""GPU plan: memory per GPU and runtime of each unlearning job, before any job is submitted.

A job is a plain dict (the lead builds one per run from the config):

    {"name": "muse_news/blur_npo", "model": "llama-2-7b" | a model folder | an architecture dict,
     "precision": "bfloat16", "gpus": 4, "strategy": "fsdp", "batch": 32, "seq_len": 2048,
     "steps": 1020, "method": {forget_loss: npo, retain_loss: nll, rule: blur, ...},
     # "batch" is the global batch; optional: "micro_batch" (most sequences per GPU per
     # forward; default batch / gpus, else accumulation),
     # "gradient_checkpointing", "optimizer_dtype", "gpu", "gpu_memory_gib", "mfu",
     # "activation_factor"}

Memory model (bytes per GPU; FSDP shards every persistent tensor over the GPUs, DDP keeps a full
replica on each). The assumptions are in ASSUMPTIONS and printed under every table:

- weights: parameters x bytes of the precision;
- frozen copies: the reference model of NPO / KL retain / RMU (RMU's frozen model), two for WHP
  (reference and reinforced model), Task Vector's copy of the starting weights; same dtype;
- gradients: trainable parameters x bytes of the precision (RMU trains mlp.down_proj of a few
  layers only);
- extra buffer: one more gradient copy (g_F kept beside .grad) when the method has a retain loss,
  i.e. the rule needs both gradients (blur, blur_reversed, weighted_sum with a retain loss);
- optimizer: AdamW's two moments per trainable parameter in `optimizer_dtype` (float32 by
  default), plus float32 master weights under precision `mixed`;
- activations: micro-batch x seq x hidden x layers x a factor (bytes per token, hidden unit and
  layer), or only the layer inputs plus one layer under gradient checkpointing; plus the logits.

Runtime: FLOPs = steps x tokens per step x params x (6 per trained batch + 2 per frozen-model
forward), over GPUs x peak FLOP/s x MFU.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilevel_unlearning import methods
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.runtime import batch_layout, parallel_strategy

GIB = 2**30


@dataclass(frozen=True)
class Architecture:
    """What a Llama-like decoder's parameter count and activation size depend on."""

    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int
    kv_heads: int
    tied_embeddings: bool = False
    head_dim: int | None = None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * (self.head_dim or self.hidden // self.heads)

    def layer_params(self) -> int:
        """One decoder layer: q, k, v, o projections, gated MLP (3 matrices), two RMSNorms."""
        attention = self.hidden * self.q_dim * 2 + self.hidden * self.kv_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        return attention + mlp + 2 * self.hidden

    def params(self) -> int:
        """Embeddings + layers + final norm + LM head (absent when tied to the embeddings)."""
        embeddings = self.vocab * self.hidden
        head = 0 if self.tied_embeddings else embeddings
        return embeddings + self.layers * self.layer_params() + self.hidden + head

    def matmul_params(self) -> int:
        """Parameters that cost FLOPs per token: the embedding lookup does not, the head does."""
        return self.layers * self.layer_params() + self.vocab * self.hidden


PRESETS: dict[str, Architecture] = {
    "llama-2-7b": Architecture(4096, 11008, 32, 32000, 32, 32),
    "mistral-7b": Architecture(4096, 14336, 32, 32000, 32, 8),  # zephyr-7b-beta
    "llama-3.2-1b": Architecture(2048, 8192, 16, 128256, 32, 8, tied_embeddings=True),
}
# Hub ids of the paper's models -> their architecture preset.
ALIASES: dict[str, str] = {
    "meta-llama/llama-2-7b-hf": "llama-2-7b",
    "muse-bench/muse-news_target": "llama-2-7b",
    "muse-bench/muse-news_retrain": "llama-2-7b",
    "muse-bench/muse-books_target": "llama-2-7b",
    "muse-bench/muse-books_retrain": "llama-2-7b",
    "huggingfaceh4/zephyr-7b-beta": "mistral-7b",
    "zephyr-7b-beta": "mistral-7b",
    "mistralai/mistral-7b-v0.1": "mistral-7b",
    "meta-llama/llama-3.2-1b-instruct": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_full": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain90": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain95": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain99": "llama-3.2-1b",
}


def architecture_from_config(config: Mapping[str, Any]) -> Architecture:
    """An Architecture from a transformers config.json (Llama/Mistral key names)."""
    heads = int(config["num_attention_heads"])
    return Architecture(
        hidden=int(config["hidden_size"]),
        intermediate=int(config["intermediate_size"]),
        layers=int(config["num_hidden_layers"]),
        vocab=int(config["vocab_size"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim"),
    )


def resolve_architecture(model: str | Mapping[str, Any]) -> Architecture:
    """A preset name or hub id, a local model folder (its config.json), or a config dict."""
    if isinstance(model, Mapping):
        return architecture_from_config(model)
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        return architecture_from_config(json.loads(config_file.read_text(encoding="utf-8")))
    key = ALIASES.get(model.lower(), model.lower())
    if key in PRESETS:
        return PRESETS[key]
    raise ValueError(
        f"unknown model {model!r}: not a folder with config.json, not a preset "
        f"({', '.join(PRESETS)}) nor a known hub id ({', '.join(ALIASES)})"
    )


# -- hardware and numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    memory_gib: float
    peak_flops: Mapping[str, float]  # dense, by compute dtype


GPUS: dict[str, Gpu] = {
    # fp32: plain FP32 (PyTorch's default keeps TF32 off for matmuls)
    "H100": Gpu(80, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}),
    "H200": Gpu(141e9 / GIB, {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}),
    "A100-80GB": Gpu(80, {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}),
    "A100-40GB": Gpu(40, {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# precision -> (weight dtype, gradient dtype, compute dtype, master fp32 weights)
PRECISIONS: dict[str, tuple[str, str, str, bool]] = {
    "float32": ("float32", "float32", "float32", False),
    "bfloat16": ("bfloat16", "bfloat16", "bfloat16", False),
    "float16": ("float16", "float16", "float16", False),
    "mixed": ("float32", "float32", "bfloat16", False),  # fp32 master model, bf16 compute
}
DEFAULTS: Mapping[str, Any] = {
    "strategy": "ddp",
    "gradient_checkpointing": False,
    "optimizer_dtype": "float32",
    "gpu": "H100",
    "mfu": 0.35,
    # bytes per (token x hidden unit x layer) kept for backward at 16-bit, flash attention
    # (no seq^2 term): 34, Korthikanti et al. 2022; doubled for fp32 activations
    "activation_factor": 34.0,
}
ASSUMPTIONS = (
    "GiB = 2^30 bytes; memory per GPU; FSDP shards weights, frozen copies, gradients, the extra "
    "buffer and optimizer state over the GPUs (its transient all-gather buffers, about two "
    "layers of weights, are not counted); DDP keeps all of them whole on every GPU.",
    "optimizer: AdamW, two moments per trainable parameter in optimizer_dtype (default float32; "
    "torch's AdamW on bfloat16 parameters keeps bfloat16 moments: set optimizer_dtype bfloat16 "
    "to model the loop as it runs now); precision `mixed` keeps the trained weights, gradients "
    "and moments in float32 (the master copy) and computes in bfloat16.",
    "extra buffer: one gradient copy (g_F beside .grad) for every method with a retain loss.",
    "frozen copies: NPO, KL retain, RMU: 1 reference; WHP: 2 (reference, reinforced); Task "
    "Vector: 1 (starting weights); in the compute dtype.",
    "activations: micro_batch x seq x hidden x layers x activation_factor bytes (34 at 16-bit, "
    "x2 at fp32); with gradient checkpointing the layer inputs plus one layer's activations; "
    "plus the logits: micro_batch x seq x vocab x (compute bytes + 8) (fp32 copy and "
    "log-softmax), and the reference's logits when a loss reads them. Peak over the two "
    "backward passes (they run one after the other).",
    "runtime: 6 x params x tokens per trained batch (forget, and retain when present) + 2 x "
    "params x tokens per frozen-model forward; params excludes the embedding lookup; attention "
    "score FLOPs are not counted; GPU peak dense FLOP/s x MFU (default 0.35).",
)


# -- what a method needs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """What a method costs beyond plain fine-tuning, read from its config entry."""

    retain_gradient: bool  # two backward passes and one extra gradient buffer
    frozen_copies: int
    reference_logits_batches: int  # batches whose frozen logits a loss holds
    frozen_forwards: int  # frozen-model forward passes per step (batches)
    rmu_layers: tuple[int, ...] | None  # trains only mlp.down_proj of these layers


def method_needs(method: Mapping[str, Any], architecture: Architecture) -> Needs:
    """Needs of a `methods` config entry, from the method catalog (what each loss asks of the
    loop) and the entry's layers and negation."""
    forget = methods.FORGET_LOSSES[method["forget_loss"]]
    retain = methods.RETAIN_LOSSES.get(method.get("retain_loss") or "", methods.LossEntry())
    logits_forget = forget.reference  # reference logits on the forget batch (NPO, WHP)
    logits_retain = retain.reference and not retain.hidden  # on the retain batch (KL)
    hidden_retain = retain.reference and retain.hidden  # frozen hidden states (RMU)
    frozen_forwards = (
        int(logits_forget) + int(forget.reinforced) + int(logits_retain) + int(hidden_retain)
    )
    copies = 2 if forget.reinforced else int(methods.needs_reference(method))
    copies += int(method.get("negation") is not None)
    layers = None
    if forget.hidden and method.get("trainable") != "all":
        layers = tuple(methods.rmu_layers(method, architecture.layers))
    return Needs(
        retain_gradient=method.get("retain_loss") is not None,
        frozen_copies=copies,
        reference_logits_batches=int(logits_forget) + int(logits_retain),
        frozen_forwards=frozen_forwards,
        rmu_layers=layers,
    )


def trainable_params(architecture: Architecture, needs: Needs) -> int:
    if needs.rmu_layers is not None:
        return len(needs.rmu_layers) * architecture.hidden * architecture.intermediate
    return architecture.params()


# -- the estimate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU by component, and the runtime, of one job."""

    name: str
    gpus: int
    strategy: str
    batch: str  # global = processes x accumulation x micro-batch
    precision: str
    params: int
    weights: float
    frozen: float
    grads: float
    extra: float
    optimizer: float
    activations: float
    gpu_memory: float
    seconds: float
    disk: float = 0.0  # bytes the run leaves: its published epochs and one training state

    @property
    def total(self) -> float:
        return (
            self.weights + self.frozen + self.grads + self.extra + self.optimizer + self.activations
        )

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_memory


def _setting(job: Mapping[str, Any], key: str) -> Any:
    return job.get(key, DEFAULTS[key])


def activation_bytes(
    architecture: Architecture,
    micro_batch: int,
    seq_len: int,
    compute_dtype: str,
    factor: float,
    checkpointing: bool,
    reference_logits_batches: int,
) -> float:
    """Activations kept for one backward pass on one GPU, logits included."""
    scale = DTYPE_BYTES[compute_dtype] / 2  # the factor is stated at 16-bit
    tokens_hidden = micro_batch * seq_len * architecture.hidden
    per_layer = tokens_hidden * factor * scale
    if checkpointing:
        layers = tokens_hidden * DTYPE_BYTES[compute_dtype] * architecture.layers + per_layer
    else:
        layers = per_layer * architecture.layers
    logit_values = micro_batch * seq_len * architecture.vocab
    logits = logit_values * (DTYPE_BYTES[compute_dtype] + 8)
    reference = logit_values * DTYPE_BYTES[compute_dtype] * min(1, reference_logits_batches)
    return layers + logits + reference


def estimate(job: Mapping[str, Any]) -> Estimate:
    """Memory per GPU by component and runtime of one job (see the module docstring)."""
    architecture = resolve_architecture(job["model"])
    precision = job["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    weight_dtype, grad_dtype, compute_dtype, master = PRECISIONS[precision]
    gpus, strategy = int(job["gpus"]), _setting(job, "strategy")
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy {strategy!r}: expected ddp or fsdp")
    shards = gpus if strategy == "fsdp" else 1
    needs = method_needs(job.get("method", {}), architecture)
    params, trainable = architecture.params(), trainable_params(architecture, needs)
    grad_bytes = trainable * DTYPE_BYTES[grad_dtype]
    optimizer = trainable * (2 * DTYPE_BYTES[_setting(job, "optimizer_dtype")] + 4 * master)
    layout = batch_layout(int(job["batch"]), gpus, job.get("micro_batch"))
    micro_batch = layout.micro_batch
    activations = activation_bytes(
        architecture,
        micro_batch,
        int(job["seq_len"]),
        compute_dtype,
        float(_setting(job, "activation_factor")),
        bool(_setting(job, "gradient_checkpointing")),
        needs.reference_logits_batches,
    )
    gpu = GPUS[_setting(job, "gpu")]
    return Estimate(
        name=str(job.get("name", "job")),
        gpus=gpus,
        strategy=strategy,
        batch=f"{layout.global_batch}={gpus}x{layout.grad_accum}x{layout.micro_batch}",
        precision=precision,
        params=params,
        weights=params * DTYPE_BYTES[weight_dtype] / shards,
        frozen=needs.frozen_copies * params * DTYPE_BYTES[compute_dtype] / shards,
        grads=grad_bytes / shards,
        extra=grad_bytes * needs.retain_gradient / shards,
        optimizer=optimizer / shards,
        activations=activations,
        gpu_memory=float(job.get("gpu_memory_gib", gpu.memory_gib)) * GIB,
        seconds=(
            math.nan  # the forget set's size is not known (yet)
            if job.get("steps") is None
            else runtime_seconds(job, architecture, needs, compute_dtype, gpu)
        ),
        disk=run_disk_bytes(job, params, trainable, weight_dtype, compute_dtype),
    )


def run_disk_bytes(
    job: Mapping[str, Any], params: int, trainable: int, weight_dtype: str, compute_dtype: str
) -> float:
    """A run's disk: each published epoch's weights (in the compute dtype) and the one training
    state kept (weights in their own dtype, AdamW's two float32 moments per trained weight)."""
    epochs = int(job.get("epochs", 1))
    state = params * DTYPE_BYTES[weight_dtype] + trainable * 8
    return epochs * params * DTYPE_BYTES[compute_dtype] + state


def training_flops(job: Mapping[str, Any], architecture: Architecture, needs: Needs) -> float:
    """FLOPs of the whole run: 6 per parameter and token per trained batch, 2 per frozen forward."""
    tokens = int(job["steps"]) * int(job["batch"]) * int(job["seq_len"])
    trained_batches = 1 + int(needs.retain_gradient)
    return tokens * architecture.matmul_params() * (6 * trained_batches + 2 * needs.frozen_forwards)


def runtime_seconds(
    job: Mapping[str, Any], architecture: Architecture, needs: Needs, compute_dtype: str, gpu: Gpu
) -> float:
    throughput = int(job["gpus"]) * gpu.peak_flops[compute_dtype] * float(_setting(job, "mfu"))
    return training_flops(job, architecture, needs) / throughput


# -- the table -----------------------------------------------------------------------------------


def _gib(value: float) -> str:
    return f"{value / GIB:.1f}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "?"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


COLUMNS = (
    "job",
    "GPUs",
    "batch",
    "precision",
    "weights",
    "frozen",
    "grads",
    "extra",
    "optim",
    "activ",
    "total GiB",
    "runtime",
    "disk GB",
    "",
)


def table_rows(estimates: Sequence[Estimate]) -> list[list[str]]:
    rows = []
    for e in estimates:
        rows.append(
            [
                e.name,
                f"{e.gpus} {e.strategy}",
                e.batch,
                e.precision,
                *(
                    _gib(v)
                    for v in (e.weights, e.frozen, e.grads, e.extra, e.optimizer, e.activations)
                ),
                _gib(e.total),
                _duration(e.seconds),
                f"{e.disk / 1e9:.0f}",
                "" if e.fits else f"EXCEEDS {e.gpu_memory / GIB:.0f} GiB",
            ]
        )
    return rows


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """Numbers right-aligned, text left-aligned."""
    numeric = (*range(4, 11), 12)
    padded = [
        c.rjust(w) if i in numeric else c.ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def _bullets(texts: Sequence[str]) -> list[str]:
    return [textwrap.fill(t, 100, initial_indent="- ", subsequent_indent="  ") for t in texts]


def totals_line(estimates: Sequence[Estimate]) -> str:
    """GPU-hours of the unlearning runs whose runtime is known, and the disk of all of them."""
    known = [e for e in estimates if not math.isnan(e.seconds)]
    hours = sum(e.seconds * e.gpus for e in known) / 3600
    unknown = len(estimates) - len(known)
    disk = sum(e.disk for e in estimates) / 1e12
    return (
        f"Totals: {len(estimates)} unlearning runs, {hours:,.0f} GPU-hours"
        + (f" (+ {unknown} of unknown runtime)" if unknown else "")
        + f", {disk:.2f} TB of checkpoints; evaluation GPU-hours are not estimated."
    )


def plan_table(rows: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> str:
    """One line per job (memory per GPU by component, runtime), notes, then the assumptions."""
    estimates = [estimate(job) for job in rows]
    body = [list(COLUMNS), *table_rows(estimates)]
    widths = [max(len(r[i]) for r in body) for i in range(len(COLUMNS))]
    lines = [_line(row, widths) for row in body]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", totals_line(estimates)]
    noted = ["", "Notes:", *_bullets(notes)] if notes else []
    assumptions = ["", "Assumptions:", *_bullets(ASSUMPTIONS)]
    return "\n".join([*lines, *noted, *assumptions]) + "\n"


def load_jobs(text: str) -> list[dict[str, Any]]:
    """Jobs from a JSON string or a JSON file: a list of job dicts, or {"jobs": [...]}."""
    inline = text.lstrip().startswith(("[", "{"))
    data = json.loads(text if inline else Path(text).read_text(encoding="utf-8"))
    jobs = data["jobs"] if isinstance(data, Mapping) else data
    if not isinstance(jobs, list) or not all(isinstance(j, Mapping) for j in jobs):
        raise ValueError('jobs must be a JSON list of objects (or {"jobs": [...]})')
    return jobs


# -- the jobs of a workflow config ---------------------------------------------------------------

# GPUs of an unlearning job when the workflow's unlearn_<benchmark> rule has no `gpus` resource
# above 0 (the default profile runs on CPUs). A DEFAULT, not a measurement: what profiles/slurm
# asks for (4 x 80 GB, FSDP, for the 7B models of MUSE and WMDP; one GPU for TOFU's 1B model).
DEFAULT_GPUS: dict[str, int] = {"muse_news": 4, "muse_books": 4, "tofu": 1, "wmdp": 4}


def default_gpus(benchmark: str, source: str) -> int:
    """DEFAULT_GPUS for the real models; one GPU for the miniature's."""
    return DEFAULT_GPUS[benchmark] if source == "hub" else 1


# Forget-set sizes of the real benchmarks, used while their data are not downloaded yet.
REFERENCE_FORGET_ITEMS: dict[str, int] = {
    # MUSE: 2048-token chunks of the forget text (SPEC: epoch 1 at batch 4 ends at step 102 on
    # News, 139 on Books); rescaled for another max_length
    "muse_news": 4 * 102,
    "muse_books": 4 * 139,
    # TOFU: question-answer pairs of each forget split
    "forget01": 40,
    "forget05": 200,
    "forget10": 400,
    # WMDP: documents of the cyber forget corpus (cais/wmdp-corpora); the bio corpus is gated:
    # counted from wmdp.bio_forget_file when it is there, else unknown
    "cyber": 1000,
}
MUSE_REFERENCE_LENGTH = 2048
BYTES_PER_TOKEN = 4  # MUSE chunks estimated from the size of a local forget file


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def muse_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """MUSE: the forget corpus cut into max_length-token chunks (its size in bytes over
    BYTES_PER_TOKEN where downloaded)."""
    body = settings["max_length"] - 1
    forget = folder / "raw/forget.jsonl" if folder else None
    if forget is not None and forget.is_file():
        return [math.ceil(forget.stat().st_size / BYTES_PER_TOKEN / body)]
    chunks = REFERENCE_FORGET_ITEMS[benchmark] * (MUSE_REFERENCE_LENGTH - 1)
    return [math.ceil(chunks / body)]


def tofu_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """TOFU: the forget split's questions."""
    split = settings["forget_split"]
    local = folder / f"{split}.jsonl" if folder else None
    return [_lines(local) if local and local.is_file() else REFERENCE_FORGET_ITEMS[split]]


def topic_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """WMDP: each topic's forget-corpus documents (bio: the gated file where given)."""
    items: list[int | None] = []
    for topic in settings["topics"]:
        candidates = [folder / f"corpora/{topic}-forget-corpus.jsonl"] if folder else []
        candidates += [bio_file] if topic == "bio" and bio_file is not None else []
        found = next((c for c in candidates if c.is_file()), None)
        items.append(_lines(found) if found else REFERENCE_FORGET_ITEMS.get(topic))
    return items


FORGET_COUNTERS = {"muse": muse_forget_items, "tofu": tofu_forget_items, "wmdp": topic_forget_items}


def forget_items(
    benchmark: str, settings: Mapping[str, Any], data: Path | None, bio_file: Path | None = None
) -> list[int | None]:
    """Forget examples of one run per topic (one topic except on WMDP): counted in the data
    folder when it exists, else REFERENCE_FORGET_ITEMS; None where neither knows."""
    folder = data if data is not None and data.is_dir() else None
    return FORGET_COUNTERS[bench(benchmark).family](benchmark, settings, folder, bio_file)


def run_steps(items: Sequence[int | None], settings: Mapping[str, Any], gpus: int) -> int | None:
    """Optimizer steps of a run, batched as the unlearning loop batches: `batch_size` examples
    per step over all processes (so independent of `gpus`), each topic batched alone, capped at
    `max_steps_per_epoch`."""
    cap = settings.get("max_steps_per_epoch")
    steps = sum(math.ceil(int(i) / settings["batch_size"]) for i in items if i is not None)
    if cap is not None and steps >= cap:  # known already, even if a forget set is not
        return settings["epochs"] * cap
    if any(i is None for i in items):
        return None
    return settings["epochs"] * (steps if cap is None else min(steps, cap))


def is_source(data: Path, source: str) -> bool:
    """Whether a data folder holds `source`'s files: a hub download leaves provenance.json."""
    downloaded = (data / "provenance.json").is_file()
    return downloaded if source == "hub" else not downloaded


def start_model(config: Mapping[str, Any], benchmark: str) -> str | dict[str, Any]:
    """What a benchmark's unlearning starts from: its hub id (source hub; the base model's id
    for a built one, same architecture), or the miniature's architecture."""
    from bilevel_unlearning.runs import START_ROLE, family

    if config["source"] == "hub":
        entry = config["hub"][benchmark]["models"][START_ROLE[family(benchmark)]]
        return entry.get("repo") or entry["build_from"]
    models = config["models"]
    return {**models["architecture"], "vocab_size": models["tokenizer"]["vocab_size"]}


def sequence_length(benchmark: str, settings: Mapping[str, Any]) -> int:
    """Tokens per sequence: the longest of a run's forget and retain sequences."""
    lengths = [settings["max_length"]]
    if bench(benchmark).topics:
        lengths += [settings["forget_lengths"][t] for t in settings["topics"]]
    return max(lengths)


def config_jobs(
    config: Mapping[str, Any],
    gpus: Mapping[str, int],
    data_root: Path | None = None,
    bio_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One plan job per unlearning run of the config (bilevel_unlearning.runs.unlearn_runs);
    `gpus`: GPUs per benchmark; `data_root`: the results folder, to count forget sets."""
    from bilevel_unlearning.runs import unlearn_runs

    jobs = []
    for benchmark in config["benchmarks"]:
        count = int(gpus[benchmark])
        model = start_model(config, benchmark)
        strategy = parallel_strategy(count, resolve_architecture(model).params())
        strategy = "ddp" if strategy == "single" else strategy  # one GPU: nothing sharded
        data = data_root / benchmark / "data" if data_root is not None else None
        if data is not None and not is_source(data, config["source"]):
            data = None  # e.g. the miniature's files where the hub data will go
        for name, run in unlearn_runs(config, benchmark).items():
            settings = run.settings
            items = forget_items(benchmark, settings, data, bio_file)
            jobs.append(
                {
                    "name": f"{benchmark}/{name}",
                    "model": model,
                    "precision": config["precision"],
                    "gpus": count,
                    "strategy": strategy,
                    "batch": settings["batch_size"],
                    "micro_batch": batch_layout(
                        settings["batch_size"], count, settings.get("micro_batch_size")
                    ).micro_batch,
                    "seq_len": sequence_length(benchmark, settings),
                    "gradient_checkpointing": bool(settings.get("gradient_checkpointing", False)),
                    "epochs": settings["epochs"],
                    "steps": run_steps(items, settings, count),
                    "method": dict(run.params),
                }
            )
    return jobs


def config_plan(config: Mapping[str, Any], gpus: Mapping[str, tuple[int, str]]) -> str:
    """The GPU plan of a config's unlearning runs (`snakemake plan`): gpus maps a benchmark to
    (GPUs per run, where that number comes from); forget sets are counted in the results
    folder where downloaded, else taken from published sizes."""
    notes = [f"{b}: {n} GPU(s) per run, from {origin}." for b, (n, origin) in gpus.items()]
    bio = config["wmdp"].get("bio_forget_file")
    results = config["results_dir"]
    per_benchmark = {b: n for b, (n, _) in gpus.items()}
    jobs = config_jobs(config, per_benchmark, Path(results), Path(bio) if bio else None)
    if any(job["steps"] is None for job in jobs):
        notes.append(
            "runtime ?: the size of a forget set is unknown until it is downloaded (the "
            "gated WMDP bio corpus: until it is at wmdp.bio_forget_file)."
        )
    notes.append(
        "steps per run: the forget set batched as the unlearning loop does, counted in "
        f"{results}/<benchmark>/data where present, else published sizes (plan.py)."
    )
    return plan_table(jobs, notes)
