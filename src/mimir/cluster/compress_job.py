"""One long compress run as a submitit job: ``torchrun`` on the GPUs of one node (or several
nodes, with a c10d rendezvous on the first), requeued on preemption and resumed exactly.

The job runs ``mimir compress --recipe FILE --out OUT`` as a child process (through
``torchrun`` when it has more than one process). Before the time limit, or when the scheduler
preempts it, Slurm sends USR2 (submitit asks for it :data:`SIGNAL_DELAY_S` seconds before the
limit); submitit then calls :meth:`CompressJob.checkpoint`, which interrupts the run as Ctrl-C
does - it finishes the step its processes agree on, writes its checkpoint and exits - and hands
submitit the same job with ``--resume`` to requeue. The requeued job continues from that
checkpoint, and the batch order and views of a step depend on the seed and the step only, so it
ends with the weights an uninterrupted run would have.

The run's processes ignore USR2 themselves: Slurm signals every process of a job step, and the run
must be interrupted once, by one SIGINT through torchrun, to stop at a step all processes agree on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mimir.cluster.resources import SIGNAL_DELAY_S, Resources, make_executor
from mimir.errors import MimirError
from mimir.recipe import Recipe

#: seconds an interrupted run has to finish its step and write its checkpoint before it is killed
GRACE_S = SIGNAL_DELAY_S - 30
#: seconds beyond GRACE_S that torchrun is given to stop its workers before the run is killed
SHUTDOWN_MARGIN_S = 10
RDZV_PORT = 29500


def _ignore_preemption_signal() -> None:   # runs in the child before exec; inherited by torchrun's workers
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class CompressJob:
    """``mimir compress ARGS`` as a checkpointable submitit job of ``nodes`` x ``processes``."""

    def __init__(self, args: list[str], checkpoint: str | Path, processes: int = 1, nodes: int = 1,
                 resume: bool = False) -> None:
        self.args = list(args)
        self.checkpoint_path = str(checkpoint)
        self.processes, self.nodes = processes, nodes
        self.resume = resume          # requeued after an interrupt: continue from the checkpoint
        self.finished = False         # the run had ended when the signal came: nothing to do again
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _proc=None)

    def _resuming(self) -> bool:
        # a job Slurm requeued by itself (preemption by SIGTERM, node failure) resumes too, from the
        # last checkpoint on disk (--checkpoint-every)
        again = self.resume or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
        return again and "--resume" not in self.args and Path(self.checkpoint_path).is_file()

    def command(self) -> list[str]:
        """The command line of the run: ``python -m mimir compress ...`` for one process, else
        ``torchrun`` (standalone on one node; a c10d rendezvous on the job's first node for several)."""
        mimir = ["-m", "mimir", "compress", *self.args] + (["--resume"] if self._resuming() else [])
        if self.processes * self.nodes == 1:
            return [sys.executable, *mimir]
        run = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={self.processes}"]
        if self.nodes == 1:
            run.append("--standalone")
        else:
            import submitit

            env = submitit.JobEnvironment()
            run += [f"--nnodes={self.nodes}", "--rdzv_backend=c10d",
                    f"--rdzv_endpoint={env.hostnames[0]}:{RDZV_PORT}", f"--rdzv_id={env.job_id}"]
        return run + mimir

    def __call__(self) -> str:
        if self.finished:
            return "finished"
        command = self.command()
        print("mimir job: " + " ".join(command), flush=True)
        env = dict(os.environ, TORCH_ELASTIC_SHUTDOWN_TIMEOUT=str(GRACE_S))
        # a session of its own, so that a run that does not stop in time goes with all its processes
        self._proc = subprocess.Popen(command, env=env, preexec_fn=_ignore_preemption_signal, start_new_session=True)
        while (code := self._proc.poll()) is None:   # poll, not wait: the signal handler polls too
            time.sleep(0.5)
        if code != 0:
            raise RuntimeError(f"mimir compress exited with status {code} (its messages are above in this log)")
        return "finished"

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on USR2: interrupt the run (it writes its checkpoint), then requeue."""
        from submitit.helpers import DelayedSubmission

        proc = self._proc
        if proc is not None and proc.poll() is None:
            print("mimir job: preempted or out of time; interrupting the run to write its checkpoint", flush=True)
            proc.send_signal(signal.SIGINT)
            end = time.monotonic() + GRACE_S + SHUTDOWN_MARGIN_S
            while proc.poll() is None and time.monotonic() < end:
                time.sleep(0.2)
            if proc.poll() is None:   # torchrun and its workers
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        again = CompressJob(self.args, self.checkpoint_path, self.processes, self.nodes, resume=True)
        again.finished = proc is not None and proc.returncode == 0
        return DelayedSubmission(again)


def job_folder(out: str | Path) -> Path:
    """Where a compress job's logs and recipe go: beside its output, named after it."""
    out = Path(out).absolute()
    return out.with_name(out.name + ".logs")


def _check_paths(recipe: Recipe) -> None:
    """The files and folders the recipe names exist here (the job's nodes read the same paths): a
    typo is one line now rather than a failed job later."""
    for name in ("data", "extra_data", "eval_data", "weights"):
        value = getattr(recipe, name)
        if not isinstance(value, str) or value in ("fashion-mnist", "auto", "none") or value.startswith("synthetic:"):
            continue
        if not Path(value).exists():
            raise MimirError(f"--{name.replace('_', '-')} {value} does not exist here",
                             "fix the path; the job's nodes read it from the same path, on storage they share")


def submit_compress(recipe: Recipe, out: str | Path, executor: str, resources: Resources, processes: int,
                    run_args: list[str] = (), checkpoint: str | Path | None = None):
    """Submit one compress run of ``recipe`` writing ``out``; its submitit job. ``run_args`` are the
    run's other flags (``--checkpoint-every N``, ``--no-latency``, ...)."""
    _check_paths(recipe)
    folder = job_folder(out)
    ex = make_executor(executor, folder, resources, name="mimir-compress")
    folder.mkdir(parents=True, exist_ok=True)
    recipe_file = folder / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    out = Path(out).absolute()
    checkpoint = Path(checkpoint).absolute() if checkpoint else out.with_name(out.name + ".ckpt")
    args = ["--recipe", str(recipe_file), "--out", str(out), "--checkpoint", str(checkpoint), *run_args]
    return ex.submit(CompressJob(args, checkpoint, processes=processes, nodes=resources.nodes))
