"""Running searches and keeping their results.

* :mod:`~nas_core.runs.history`: run directories (a config, one record per
  epoch, checkpoints), the run cache keyed by config, :func:`run` /
  :func:`run_all` / :func:`load`, each giving a :class:`History` (defined in
  :mod:`nas_core.record`, with the record it holds).
* :mod:`~nas_core.runs.parallel`: the one worker pool (one torch thread per
  worker) that :func:`run_all` and a sweep's local backend use.
* :mod:`~nas_core.runs.io`: atomic writes, strict JSON, digests.
* :mod:`~nas_core.runs.sweep` (grid specs, trials, tables) and
  :mod:`~nas_core.runs.sweep_backends` (running trials: local pool, Ray),
  imported when used (``from nas_core.runs import sweep``).
"""
from ..record import History
from .history import RunError, checkpoint_of, default_cache_dir, load, run, run_all, run_dir_for

__all__ = ["History", "RunError", "checkpoint_of", "default_cache_dir", "load", "run", "run_all", "run_dir_for"]
