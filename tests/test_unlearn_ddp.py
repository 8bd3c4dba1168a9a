"""Two CPU processes under DDP (gloo) give the weights one process gets with the same global batch.

Both gradients are averaged across processes before the rule combines them, so the inner
products are those of the global batch and are not summed twice.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from unlearn_fixtures import tiny_model, unlearner

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ddp_processes_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(TESTS / "unlearn_ddp_worker.py"),
        str(tmp_path / "ddp"),
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=TESTS)
    assert result.returncode == 0, result.stderr[-4000:]

    single = unlearner("blur_npo", tmp_path / "single", epochs=1, batch_size=4)
    single.run()
    ddp = load_file(tmp_path / "ddp" / "epoch_1" / "model.safetensors")
    one = load_file(tmp_path / "single" / "epoch_1" / "model.safetensors")
    assert ddp.keys() == one.keys()
    for key, value in one.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
    initial = tiny_model().state_dict()
    assert any(not torch.equal(one[k], initial[k]) for k in one), "the step moved nothing"
