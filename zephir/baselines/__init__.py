"""The baselines of table 2 and figure 7, trained and evaluated by the same workflow as HD-CLIP.

Each model meets :class:`zephir.estimator_interface.Estimator`: ``image_size``, ``forward(images)``,
``loss_terms(out, present, level, *, terms, targets)`` and ``estimate_batch(images)``.
"""
