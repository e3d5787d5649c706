"""The paper's tables and figures, rendered from results files (never from a model in memory).

The modules split on one axis, the kind of artefact, and import one way:
:mod:`~zephir.report.results` (the leaf: reads results files and names what they hold) ->
:mod:`~zephir.report.render` (writes a table: CSV data, formatted Markdown and LaTeX) ->
:mod:`~zephir.report.captions` (every caption and figure title note, from the results'
metadata) -> :mod:`~zephir.report.tables` (builds every table) and
:mod:`~zephir.report.figures` (draws every figure) -> :mod:`~zephir.report.registry` (lists
them: the one list the command line and the workflow read). Beside them,
:mod:`~zephir.report.efficiency` measures table 6's encoders, :mod:`~zephir.report.paper` sets
the paper's printed values beside a run's, :mod:`~zephir.report.headline` picks the numbers
`dvc metrics show` prints.
"""
