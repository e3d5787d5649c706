"""ZePHiR."""
# First, before any third-party import: no library reaches for the network or prints what the
# user cannot act on when zephir starts (zephir/quiet.py says which and why).
from zephir import quiet as _quiet

_quiet.apply()
