"""Run by torchrun in the WHP test: the reinforced model trained on a tiny model sharded over 2
gloo processes (FSDP2), each process taking its share of every batch; process 0 saves the
gathered weights, and the dtype its sharded forward computes in under `precision: mixed`."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from unlearn_fixtures import data, method, tiny_model

from bilevel_unlearning.unlearn.run import reinforced_model
from bilevel_unlearning.unlearn.sharding import full_state_dict

SETTINGS = {"learning_rate": 1e-3, "batch_size": 4}

if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.distributed.init_process_group("gloo")
    forget = data(forget_examples=8)
    rows: list[int] = []  # sequences per forward pass on this process (the copy keeps the hook)
    model = tiny_model()
    model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    trained = reinforced_model(model, forget, method("whp"), SETTINGS, 0, strategy="fsdp")
    weights = full_state_dict(trained)
    mixed = reinforced_model(
        tiny_model(), forget, method("whp"), SETTINGS, 0, strategy="fsdp", precision="mixed"
    )
    with torch.no_grad():
        logits = mixed(torch.tensor([[1, 2, 3]])).logits
    if torch.distributed.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in weights.items()}, out / "reinforced.safetensors")
        record = {"logits_dtype": str(logits.dtype), "rows_per_pass": rows}
        (out / "mixed.json").write_text(json.dumps(record))
    torch.distributed.destroy_process_group()
