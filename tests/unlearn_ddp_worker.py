"""Run by torchrun in the DDP test: BLUR-NPO on the tiny model with a per-process batch."""

import sys
from pathlib import Path

from unlearn_fixtures import unlearner

if __name__ == "__main__":
    out, per_process_batch = Path(sys.argv[1]), int(sys.argv[2])
    run = unlearner("blur_npo", out, epochs=1, batch_size=per_process_batch)
    assert run.accelerator.num_processes == 2, run.accelerator.state
    run.run()
