"""`python -m zephir` (used under torchrun) is the `zephir` command."""
import sys

from zephir.cli import main

sys.exit(main())
