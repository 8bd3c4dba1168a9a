"""Run by torchrun in the sharded-loading test: start_models under FSDP over 2 gloo processes,
where process 1 is given a folder with the model's config.json only. It can build its copies
only if it never reads the weights (process 0 broadcasts them). Process 0 saves every copy's
gathered weights, their dtypes and a forward pass of each."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from bilevel_unlearning.placement import start_models
from bilevel_unlearning.unlearn.sharding import full_state_dict

if __name__ == "__main__":
    full, config_only, out = (Path(a) for a in sys.argv[1:4])
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    models = start_models(
        full if rank == 0 else config_only,
        "mixed",
        "fsdp",
        torch.device("cpu"),
        reference=True,
        reinforced=True,
        checkpointing=True,
    )
    copies = {"model": models.model, "reference": models.reference, "reinforced": models.reinforced}
    tokens = torch.tensor([[1, 5, 9, 30, 2, 7]])
    record = {}
    for name, module in copies.items():
        weights = full_state_dict(module)  # collective
        with torch.no_grad():
            logits = module(tokens).logits
        if rank == 0:
            save_file({k: v.contiguous() for k, v in weights.items()}, out / f"{name}.safetensors")
            torch.save(logits.float(), out / f"{name}_logits.pt")
            record[name] = {
                "dtypes": sorted({str(v.dtype) for v in weights.values()}),
                "buffers": {k: str(v.dtype) for k, v in module.named_buffers()},
                "checkpointing": module.is_activation_checkpointing,
                "training": module.training,
            }
    if rank == 0:
        (out / "record.json").write_text(json.dumps(record))
    torch.distributed.destroy_process_group()
