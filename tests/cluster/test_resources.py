"""What a job asks the scheduler for: parameters submitit takes, sbatch lines as submitit writes them."""

import pytest

from mimir.cluster import Resources, make_executor
from mimir.errors import MimirError

submitit = pytest.importorskip("submitit")

EVERYTHING = Resources(partition="gpu", time=90, cpus=8, gpus=4, mem="64G", nodes=2, array_parallelism=16,
                       sbatch={"qos": "high", "account": "vision"})


def test_every_slurm_parameter_is_one_submitits_slurm_executor_takes():
    from submitit.slurm.slurm import SlurmExecutor

    params = EVERYTHING.submitit_parameters("slurm", "mimir-x")
    assert set(params) <= SlurmExecutor._valid_parameters(), set(params) - SlurmExecutor._valid_parameters()
    assert params["time"] == 90 and params["gpus_per_node"] == 4 and params["nodes"] == 2


def test_the_local_executor_takes_its_parameters(tmp_path):
    ex = make_executor("submitit-local", tmp_path, Resources(time=5, gpus=0))
    assert ex.parameters["timeout_min"] == 5
    with pytest.raises(MimirError, match="this machine only"):
        make_executor("submitit-local", tmp_path, Resources(nodes=2))


def test_sbatch_lines_are_submitits():
    lines = EVERYTHING.sbatch_lines("/shared/logs", "mimir-grid", array=10)
    for expected in ("--array=0-9%10", "--partition=gpu", "--time=90", "--cpus-per-task=8", "--gpus-per-node=4",
                     "--mem=64G", "--nodes=2", "--ntasks-per-node=1", "--qos=high", "--account=vision",
                     "--job-name=mimir-grid", "--signal=USR2@120"):
        assert f"#SBATCH {expected}" in lines, expected
    single = Resources().sbatch_lines("/shared/logs")
    assert not any("--array" in line or "--gpus" in line for line in single)


@pytest.mark.parametrize("change, message", [({"time": 0}, "time must be a positive"),
                                             ({"gpus": -1}, "gpus must be a non-negative"),
                                             ({"nodes": 0}, "nodes must be a positive")])
def test_bad_resources_are_named(change, message):
    with pytest.raises(MimirError, match=message):
        Resources().with_(**change)
