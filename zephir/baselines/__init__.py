"""The baselines of table 2 and figure 7, trained and evaluated by the same workflow as HD-CLIP.

Each model offers the estimator interface of :class:`zephir.hdclip.model.HDCLIP`:
``image_size``, ``forward(images)``, ``loss_terms(out, present, level, cfg)`` and
``estimate_batch(images) -> (scores, levels)``.
"""
