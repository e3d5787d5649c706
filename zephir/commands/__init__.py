"""The sub-commands of ``zephir``, one module per command or family of commands.

Each module declares its sub-commands' arguments beside their handlers: ``register(sub)`` adds
its parser(s) to the ``zephir`` sub-parsers and sets ``func`` to the handler, a function of the
parsed arguments that returns the exit status. (diffusers' ``commands/`` gives each command a
class with a static ``register_subcommand(parser)`` and a ``run()``; a zephir handler keeps no
state, so it is a plain function.) The flags several commands share (``--config``, ``--device``,
``--quiet``, ``--lq``, ``--out``, the CLIP flags) are declared once, in
:mod:`zephir.commands.options`. A module imports at its top only what parsing needs (the config
loader, the degradation types); a handler imports the package code it runs, so that ``zephir
restore`` in a backbone's environment imports the restore path only.

:data:`COMMANDS` lists the modules in the order ``zephir --help`` shows their commands.
"""
from __future__ import annotations

#: The command modules of :mod:`zephir.commands`, in the order of ``zephir --help``.
COMMANDS = ("degrade", "train", "restore", "embed", "score", "weights", "evaluate", "report",
            "dvc", "predict", "data")
