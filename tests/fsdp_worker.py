"""Run by torchrun in the FSDP tests: a method on the tiny model, sharded over 2 gloo processes
with FSDP2 (fully_shard), the global batch split over the processes."""

import sys
from pathlib import Path

from unlearn_fixtures import unlearner

if __name__ == "__main__":
    name, out, epochs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    stop_after = int(sys.argv[4]) if len(sys.argv) > 4 else None
    topics = 2 if "rmu" in name else 1
    method, _, variant = name.partition("+")  # blur_npo+clip: the direction clipped
    clip = {"clip_norm": 0.01} if variant == "clip" else {}
    run = unlearner(method, out, topics=topics, epochs=epochs, batch_size=4, sharded=True, **clip)
    assert run.accelerator.num_processes == 2, run.accelerator.state
    if stop_after is not None:  # a job killed right after an epoch's checkpoint
        checkpoint = run._checkpoint

        def stop(epoch: int) -> None:
            checkpoint(epoch)
            if epoch == stop_after:
                sys.exit(3)

        run._checkpoint = stop
    run.run()
