"""Puts tests/backbones/standins on ``sys.path`` so the stand-in's modules find
``standin_common`` (the code both stand-ins share)."""
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parents[1])
if HERE not in sys.path:
    sys.path.append(HERE)
