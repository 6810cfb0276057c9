"""The studies' configs: base config plus `get_hyper`-style sweeps of arms (installed code)."""
