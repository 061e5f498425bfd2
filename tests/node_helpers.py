"""Two 'machines' on this host: each an `accelerate launch --num_machines 2 --machine_rank R` of its own (gloo on
the CPU), as on two hosts that reach rank 0 at 127.0.0.1. Run as a script, a task's command line with test hooks
from the environment: machine 1 dies after a checkpoint (KILL_AFTER), each process records its batches (RECORD)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILL_AFTER = "TUNESUITE_TEST_KILL_AFTER_STEP"
RECORD = "TUNESUITE_TEST_RECORD_BATCHES"  # a folder: each process writes rank{R}.jsonl there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "1",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src}


def launch(rank: int, port: int, script: str, args: list[str], processes: int = 2,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Machine `rank` of two, `processes` processes in all (split evenly); its own process group, so a test
    can kill the whole 'machine'."""
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_machines", "2",
           "--num_processes", str(processes), "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no", script, *args]
    return subprocess.Popen(cmd, env=env or node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """(exit code, output) of each machine; a machine still running after `timeout` is killed (a peer that lost
    its partner may wait on it)."""
    done = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        done.append((proc.returncode, out))
    return done


def run_pair(script: str, per_node: list[list[str]], timeout: float, processes: int = 2,
             env: dict[str, str] | None = None) -> list[tuple[int, str]]:
    port = free_port()
    return finish([launch(rank, port, script, args, processes, env) for rank, args in enumerate(per_node)], timeout)


def _die_after_checkpoint(step: int) -> None:
    """Machine 1's processes SIGKILL themselves once checkpoint-`step` is saved."""
    from tunesuite.train import checkpoints

    if os.environ.get("GROUP_RANK") == "1":  # torchrun: this machine's rank
        original = checkpoints.MarkCompleteCallback.on_save

        def on_save(self, args, state, control, **kwargs):
            original(self, args, state, control, **kwargs)
            if state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoints.MarkCompleteCallback.on_save = on_save


def _record_batches(folder: Path) -> None:
    """Each process appends the input_ids rows of every training batch it computes a loss on to
    folder/rank{RANK}.jsonl, one line a batch."""
    import json

    from tunesuite.train.trainer import TuneTrainer

    original = TuneTrainer.compute_loss
    path = folder / f"rank{os.environ.get('RANK', '0')}.jsonl"

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            with path.open("a") as f:
                f.write(json.dumps(inputs["input_ids"].tolist()) + "\n")
        return original(self, model, inputs, *args, **kwargs)

    TuneTrainer.compute_loss = compute_loss


if __name__ == "__main__":
    import tunesuite

    if KILL_AFTER in os.environ:
        _die_after_checkpoint(int(os.environ[KILL_AFTER]))
    if RECORD in os.environ:
        _record_batches(Path(os.environ[RECORD]))
    tunesuite.run(sys.argv[1], sys.argv[2:])
