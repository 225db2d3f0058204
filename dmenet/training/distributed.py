"""Which devices and processes a training run spans (tf.distribute), and what each process writes.

    auto         MirroredStrategy over all local GPUs when there are several, else one device
    default      one device
    mirrored     MirroredStrategy over all local devices
    multiworker  MultiWorkerMirroredStrategy across processes (one or more machines)

A multi-worker run finds its cluster in `TF_CONFIG` (set by the launcher, or by hand as in
docs/training.md) or, inside a SLURM job step with several tasks, through TensorFlow's SLURM resolver. Every
worker runs the same command on the same shared run directory. Each builds the same input pipeline
from the same seed and keeps its own slice of every global batch (tf.data's DATA sharding), so N
workers train exactly as one process on the same global batch. The chief (worker 0) alone writes
the run directory; the others take part in every checkpoint save (it is a collective operation) but
write it to a scratch folder that is deleted at once.

When a worker dies, the survivors' next collective fails (TensorFlow's coordination service notices
the missing heartbeat); `train.py` reports it as a `WorkerLostError` and the run resumes from its
last checkpoint when the workers are started again.
"""
import json
import os
import pathlib
import shutil

import tensorflow as tf

from dmenet.training.config import STRATEGIES

SLURM_PORT_BASE = 8888


class ClusterConfigError(ValueError):
    """--strategy multiworker without a usable cluster description."""


class WorkerLostError(RuntimeError):
    """A worker of a multi-worker run stopped answering; the last checkpoint is kept."""


def _slurm_job_step_with_tasks():
    return "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def _node_has_gpus():
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return bool(visible.strip()) if visible is not None else shutil.which("nvidia-smi") is not None


def slurm_resolver():
    """TensorFlow's SLURM resolver for this job step (`srun`): one worker per task, ports from
    DMENET_SLURM_PORT_BASE (default 8888) up on each node, and on GPU nodes each task given its
    share of the node's GPUs through CUDA_VISIBLE_DEVICES."""
    port_base = int(os.environ.get("DMENET_SLURM_PORT_BASE", SLURM_PORT_BASE))
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver
    if _node_has_gpus():
        return resolver(port_base=port_base)
    # CPU nodes: the resolver would ask nvidia-smi and split zero GPUs among the tasks; give each
    # task a nominal slot and leave the devices alone.
    tasks = int(os.environ["SLURM_STEP_NUM_TASKS"])
    return resolver(port_base=port_base, gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)


def cluster_resolver():
    """The cluster of a multi-worker run: TF_CONFIG if set, else the SLURM job step's tasks.

    Returns:
        A tf.distribute.cluster_resolver.ClusterResolver.

    Raises:
        ClusterConfigError: neither is there, or TF_CONFIG does not describe a worker cluster.
    """
    resolvers = tf.distribute.cluster_resolver
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            config = json.loads(raw)
            workers = config["cluster"]["worker"]
            task = config["task"]
        except (ValueError, KeyError, TypeError) as error:
            raise ClusterConfigError(
                f"TF_CONFIG is not valid ({error!r}); it must be JSON like "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
            ) from None
        if task.get("type") not in ("worker", "chief") or not isinstance(workers, list) or not workers:
            raise ClusterConfigError("TF_CONFIG must list the workers under cluster.worker and give this "
                                     'process\'s task as {"type": "worker", "index": I}')
        return resolvers.TFConfigClusterResolver()
    if _slurm_job_step_with_tasks():
        return slurm_resolver()
    raise ClusterConfigError(
        "--strategy multiworker needs TF_CONFIG (the cluster's workers and this process's index) or a SLURM job "
        "step with several tasks (srun ... python train.py); see docs/training.md, 'Multi-worker training'"
    )


def make_strategy(name="auto"):
    """The tf.distribute strategy called `name` (one of STRATEGIES).

    Create it before any other TensorFlow work: a multi-worker strategy must set up the cluster
    first.

    Example:
        >>> strategy = make_strategy("multiworker")   # with TF_CONFIG set
    """
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver())
    raise ValueError(f"unknown strategy {name!r}: {', '.join(STRATEGIES)}")


def is_multi_worker(strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    extended = strategy.extended
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


def worker_count(strategy):
    """How many worker processes the run spans (1 on a single process)."""
    if not is_multi_worker(strategy):
        return 1
    return len(strategy.cluster_resolver.cluster_spec().as_dict().get("worker", [])) or 1


def worker_index(strategy):
    """This process's index among the workers (0 on a single process)."""
    return strategy.cluster_resolver.task_id if is_multi_worker(strategy) else 0


def is_chief(strategy):
    """Worker 0 writes the run directory; every worker of a single-process run is the chief."""
    return worker_index(strategy) == 0


def check_global_batch(batch_size, strategy, what="--batch-size"):
    """The global batch must split evenly over the replicas (sync BN and the loss scaling assume it)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ClusterConfigError(f"{what} {batch_size} does not split evenly over {replicas} replicas; "
                                 f"use a multiple of {replicas}")


def shard_by_batch_slices(dataset):
    """Let every worker keep its own slice of each global batch (all build the same pipeline)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def scratch_directory(directory, strategy):
    """Where this worker writes a checkpoint: the real folder for the chief, a per-worker scratch
    folder beside it for the others (deleted after each save)."""
    directory = pathlib.Path(directory)
    return directory if is_chief(strategy) else directory / f".worker-{worker_index(strategy)}"


def remove_scratch(directory, strategy):
    if not is_chief(strategy):
        shutil.rmtree(scratch_directory(directory, strategy), ignore_errors=True)


WORKER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                   tf.errors.AbortedError)


def as_worker_failure(error, strategy, checkpoint_step, checkpoint_directory):
    """A WorkerLostError for a collective that failed because a peer is gone, else None."""
    if not is_multi_worker(strategy):
        return None
    text = str(error)
    lost = isinstance(error, WORKER_FAILURES) or (
        isinstance(error, tf.errors.OpError) and any(s in text for s in ("heartbeat", "Collective ops is aborted",
                                                                           "coordination service", "Socket closed")))
    if not lost:
        return None
    first_line = text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__
    return WorkerLostError(
        f"worker {worker_index(strategy)} of {worker_count(strategy)}: another worker stopped answering "
        f"({type(error).__name__}: {first_line}). The last checkpoint (step {checkpoint_step}) in {checkpoint_directory} "
        "is kept; start every worker again with the same command to resume from it."
    )
