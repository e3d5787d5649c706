"""The trainer of every estimator: HD-CLIP, the baselines of table 2 and the ablations.

It sits above the models (:mod:`zephir.estimator_registry`), which know nothing of ranks,
optimisers or checkpoint files: :mod:`~zephir.training.loop` runs the optimisation and writes the
outputs, :mod:`~zephir.training.batches` serves the labelled samples,
:mod:`~zephir.training.distributed` is the one place that knows about ranks.
"""
from zephir.training.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
