"""What a job asks a scheduler for, and the submitit executor that asks it.

One ``Resources`` describes a job on Slurm (``slurm``) or, for testing, as processes of this
machine (``submitit-local``, submitit's LocalExecutor: the same pickled job, the same signals on
timeout). The sbatch parameters shown to a user come from submitit's own sbatch writer, so what
``--list`` prints is what would be submitted.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mimir.errors import MimirError

EXECUTORS = ("local", "submitit-local", "slurm")
#: seconds before the time limit at which Slurm sends USR2 (submitit's preemption signal)
SIGNAL_DELAY_S = 120


@dataclass(frozen=True)
class Resources:
    """What each job asks for (a grid cell's job, or one compress run's): from a grid file's
    ``slurm:`` section, then the command line."""

    partition: str | None = None
    time: int = 60                 # minutes per job
    cpus: int = 1                  # per task (one task per node)
    gpus: int = 0                  # per node; the run (device auto) then uses them
    mem: str | None = None         # per node, e.g. 16G
    nodes: int = 1
    array_parallelism: int = 64    # jobs of an array running at once
    sbatch: dict[str, str] = field(default_factory=dict)   # any other sbatch parameter

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> "Resources":
        known = {f.name for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise MimirError(f"{source}: unknown resource '{key}' (known: {', '.join(sorted(known))})",
                                 "fix the key")
            if key in ("time", "cpus", "gpus", "nodes", "array_parallelism") and (
                    not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "gpus" else 1)):
                raise MimirError(f"{source}: {key} must be a {'non-negative' if key == 'gpus' else 'positive'} "
                                 f"integer (got {value!r})", f"e.g. {key}: {1 if key != 'time' else 120}")
        if not isinstance(values.get("sbatch", {}), dict):
            raise MimirError(f"{source}: sbatch must be a mapping of sbatch parameters", "e.g. sbatch: {qos: high}")
        return cls(**{**values, "sbatch": {str(k): str(v) for k, v in values.get("sbatch", {}).items()}})

    def with_(self, **changes: Any) -> "Resources":
        """These resources with every change that is not None."""
        return Resources.from_mapping({**asdict(self), **{k: v for k, v in changes.items() if v is not None}},
                                      "the command line")

    def submitit_parameters(self, executor: str, name: str = "mimir") -> dict[str, Any]:
        """The parameters (in the executor's own names) that submitit's ``executor`` takes."""
        if executor == "submitit-local":   # one node; cpus and memory are this machine's
            return {"timeout_min": self.time, "gpus_per_node": self.gpus, "tasks_per_node": 1,
                    "signal_delay_s": SIGNAL_DELAY_S}
        slurm = {"job_name": name, "time": self.time, "nodes": self.nodes, "ntasks_per_node": 1,
                 "cpus_per_task": self.cpus, "gpus_per_node": self.gpus or None, "partition": self.partition,
                 "mem": self.mem, "array_parallelism": self.array_parallelism, "signal_delay_s": SIGNAL_DELAY_S,
                 "additional_parameters": dict(self.sbatch) or None}
        return {k: v for k, v in slurm.items() if v is not None}

    def sbatch_lines(self, folder: str | Path, name: str = "mimir", array: int | None = None) -> list[str]:
        """The ``#SBATCH`` lines of the job (an array of ``array`` jobs), as submitit writes them."""
        from submitit.slurm.slurm import _make_sbatch_string

        script = _make_sbatch_string(command="", folder=folder, map_count=array,
                                     **self.submitit_parameters("slurm", name))
        return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def require(executor: str, scheduler: bool = True):
    """submitit (and for ``slurm``, unless ``scheduler`` is False, Slurm's ``sbatch``), or the
    one-line error saying how to get them."""
    try:
        import submitit
    except ImportError:
        raise MimirError(f"--executor {executor} needs submitit, which is not installed",
                         "pip install 'mimir[cluster]'") from None
    if scheduler and executor == "slurm" and shutil.which("sbatch") is None:
        raise MimirError("--executor slurm: Slurm is not installed here (no 'sbatch' on the PATH)",
                         "run on the cluster's login node, or test with --executor submitit-local")
    return submitit


def make_executor(executor: str, folder: str | Path, resources: Resources, name: str = "mimir"):
    """submitit's executor for ``executor`` (``slurm`` or ``submitit-local``), logs in ``folder``."""
    submitit = require(executor)
    if executor == "slurm":
        ex = submitit.SlurmExecutor(folder)
    else:
        if resources.nodes > 1:
            raise MimirError(f"--executor submitit-local runs on this machine only (asked for {resources.nodes} nodes)",
                             "use --nodes 1, or --executor slurm")
        ex = submitit.LocalExecutor(folder)
    ex.update_parameters(**resources.submitit_parameters(executor, name))
    return ex
