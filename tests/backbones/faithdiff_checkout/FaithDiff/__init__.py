# ruff: noqa: N999  (upstream's package name)
