"""What third-party libraries may not do when zephir starts: reach for the network, or print
failures and warnings the user cannot act on (issue 30).

`zephir/__init__.py` calls :func:`apply` before anything else is imported, so it holds for every
``zephir`` command, ``python -m zephir`` (torchrun, the backbones' environments), the Snakefile
(which imports ``zephir.config``) and code that imports zephir first. docs/benchmarks.md
("Import cost") says what it saves.
"""
from __future__ import annotations

import sys

#: Installed packages zephir never uses and keeps from importing, with why.
BLOCKED = {
    # bitsandbytes >= 0.49 ("Hf kernel", bitsandbytes PR 1814; 0.50.2's backends/cpu/ops.py
    # lines 242-255), on any CPU with AVX512-BF16, calls `kernels.get_kernel(
    # "kernels-community/quantization-bitsandbytes")` at import: the Hub is asked for the
    # publisher, then for code to download and load; where that fails (no internet, or the
    # publisher check) it logs "Failed to load CPU gemm_4bit_forward from kernels-community" and
    # falls back to its own CPU kernel. It has no switch for this (the only variables it reads
    # are BNB_CUDA_VERSION / BNB_ROCM_VERSION); HF_HUB_OFFLINE stops the request but not the
    # line, and would also stop downloads the user asks for. pyiqa requires it on Linux
    # (Requires-Dist, so the install cannot leave it out) but imports it only for Q-Align /
    # Compare2Score in 4 or 8 bits (pyiqa/archs/qalign_arch.py 70-86); zephir runs Q-Align in
    # fp16. What imports it here is diffusers: diffusers/quantizers/bitsandbytes/utils.py
    # imports it whenever it is installed, at the first model built. A `None` in sys.modules
    # makes `import bitsandbytes` raise ImportError and `importlib.util.find_spec` return None,
    # which is how diffusers and transformers test for it: both then take it as not installed.
    # To use it in the same process, import it before zephir.
    "bitsandbytes": "asks the Hugging Face Hub for a kernel at import (zephir never uses it)",
}


def apply() -> None:
    """Keep :data:`BLOCKED` packages from importing (unless already imported)."""
    for name in BLOCKED:
        sys.modules.setdefault(name, None)
