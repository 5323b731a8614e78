"""Audio jobs of a preparation run in worker processes, one per available core by default.

Converting the LP release (about 800 h of FLAC at mixed rates) one file at a time takes hours; the
preparations hand their decode-resample-write jobs to :func:`map_jobs`, which keeps the jobs'
order, so the manifests do not depend on the number of workers.
"""

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

JOBS_PER_WORKER = 256
"""By default a worker is started per this many jobs (up to one per core): each spends seconds
importing torch for the resampler, which a few hundred short files do not repay."""


def available_cpus():
    """The CPU cores this process may run on: its affinity mask where the OS has one (as under
    ``taskset`` or a SLURM allocation), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_count(num_workers, n_jobs):
    """Processes for ``n_jobs`` jobs: ``num_workers`` when given, else one per available core
    (:func:`available_cpus`) and per :data:`JOBS_PER_WORKER` jobs.

    Example
    -------
    >>> worker_count(3, 10), worker_count(None, 10)
    (3, 1)
    """
    if num_workers is not None:
        return num_workers
    return max(1, min(available_cpus(), math.ceil(n_jobs / JOBS_PER_WORKER)))


def _one_thread():
    """Pool initializer: one torch thread per worker, as the workers already fill the cores."""
    import torch

    torch.set_num_threads(1)


def map_jobs(function, jobs, num_workers=None):
    """``[function(*job) for job in jobs]``, in worker processes when there are several.

    Arguments
    ---------
    function : callable
        A module-level function (workers import it by name).
    jobs : list of tuple
        Its positional arguments, one tuple per call.
    num_workers : int, optional
        Processes (:func:`worker_count`; 1 or fewer: this process).

    Returns
    -------
    list
        The results, in the order of ``jobs``.

    Example
    -------
    >>> map_jobs(pow, [(2, 3), (3, 2)], num_workers=1)
    [8, 9]
    """
    workers = worker_count(num_workers, len(jobs))
    if workers <= 1 or len(jobs) <= 1:
        return [function(*job) for job in jobs]
    # spawn, not fork: a fork of a process whose torch thread pool has run can deadlock. Chunks
    # of up to 16 jobs, at least four per worker.
    chunk = max(1, min(16, math.ceil(len(jobs) / (4 * workers))))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        return list(pool.map(function, *zip(*jobs), chunksize=chunk))
