"""Code traced into the jitted train step (on-device augmentation, mixup/cutmix); the host-side input pipeline is `livt_jax.data`."""
