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
    # 242-255), on a CPU with AVX512-BF16, calls `kernels.get_kernel("kernels-community/
    # quantization-bitsandbytes")` at import: it asks the Hub for the publisher, then for code to
    # download and load; where that fails (no internet, or the publisher check) it logs "Failed
    # to load CPU gemm_4bit_forward from kernels-community" and uses its own CPU kernel. Its
    # import also costs ~5 s on 2 CPU cores: its default backend wraps functions in
    # torch.compile at import (backends/default/ops.py 12-19), which loads torch._dynamo and
    # torch._inductor (docs/benchmarks.md, "Import cost"). It has no switch for either (the only
    # variables it reads are BNB_CUDA_VERSION / BNB_ROCM_VERSION); HF_HUB_OFFLINE=1 stops the
    # request but still prints two lines, and would stop the downloads a user asks for too.
    # pyiqa requires it but on macOS (Requires-Dist: an install cannot leave it out) and imports
    # it only for Q-Align / Compare2Score in 4 or 8 bits (pyiqa/archs/qalign_arch.py 70-86);
    # zephir runs Q-Align in fp16. What imported it is diffusers, whenever it is installed, as
    # soon as a model class is imported (models/modeling_utils.py 41 -> quantizers/bitsandbytes/
    # utils.py 30-31). A None in sys.modules makes `import bitsandbytes` raise ImportError and
    # `importlib.util.find_spec` return None, which is how diffusers and transformers test for
    # it: both then take it as not installed. To use it in a process, import it before zephir.
    "bitsandbytes": "asks the Hugging Face Hub for a kernel at import; zephir never uses it",
}


def apply() -> None:
    """Keep :data:`BLOCKED` packages from importing (unless already imported)."""
    for name in BLOCKED:
        sys.modules.setdefault(name, None)
