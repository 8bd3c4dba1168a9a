"""Run by torchrun in the DDP test: BLUR-NPO on the tiny model, the global batch split over the
processes (no accumulation)."""

import json
import sys
from pathlib import Path

from unlearn_fixtures import unlearner

if __name__ == "__main__":
    out, global_batch, examples = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None  # e.g. a BalDRO side
    settings = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}  # e.g. a linear schedule
    run = unlearner(
        "blur_npo",
        out,
        batch_size=global_batch,
        forget_examples=examples,
        overrides=overrides or None,
        **{"epochs": 2, **settings},
    )
    assert run.accelerator.num_processes == 2, run.accelerator.state
    assert run.layout.grad_accum == 1, run.layout
    run.run()
