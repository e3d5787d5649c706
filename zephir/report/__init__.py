"""The paper's tables and figures, rendered from results files (never from a model in memory).

:mod:`~zephir.report.registry` lists them (the one list the command line and the workflow
read); :mod:`~zephir.report.tables` builds tables, :mod:`~zephir.report.render` writes them
(CSV data, formatted Markdown and LaTeX), :mod:`~zephir.report.captions` writes captions from
the results' metadata, :mod:`~zephir.report.figures` draws figures.
"""
