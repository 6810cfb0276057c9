"""The dataset configs (`get_config(arg)`), shipped as `livt_jax.configs`: `--config NAME[:ARG]`."""
