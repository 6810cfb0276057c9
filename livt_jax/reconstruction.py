"""MGP's picture for people: fixed validation images, their masked input and the MAE's reconstruction."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from livt_jax import paths, report
from livt_jax.data import pipeline
from livt_jax.models import mae as mae_lib


def write_reconstructions(config, data_cfg: ml_collections.ConfigDict, workdir: str,
                          model: mae_lib.MaskedAutoencoder, params, eval_source) -> None:
    """`workdir/reconstructions.png`: original, masked input, reconstruction of
    `config.pretrain.num_vis_images` validation images spread over the classes.

    The reconstruction undoes the per-patch target normalisation (norm-pix)
    with each patch's own mean/variance and the dataset normalisation, so it
    is shown in pixel space; visible patches are pasted from the input.
    """
    n = min(config.pretrain.num_vis_images, len(eval_source))
    if n == 0 or not report.is_writer():
        return
    picks = np.linspace(0, len(eval_source) - 1, n).astype(int)  # spread over the classes
    images = np.stack([pipeline.eval_image(data_cfg, eval_source[i]["image"]) for i in picks])
    loss, pred, mask = jax.jit(lambda p, x: model.apply(
        {"params": p}, x, train=False, rngs={"masking": jax.random.key(config.seed)}))(
            jax.device_get(params), jnp.asarray(images))
    p = model.patch_size
    target = mae_lib.patchify(jnp.asarray(images), p)
    if model.norm_pix_loss:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)
        pred = pred * jnp.sqrt(var + 1e-6) + mean
    keep = mask[..., None]
    recon = mae_lib.unpatchify(pred * keep + target * (1 - keep), p)
    masked = mae_lib.unpatchify(target * (1 - keep), p)
    mean = np.asarray(config.data.mean, np.float32)
    std = np.asarray(config.data.std, np.float32)
    to_pixels = lambda x: np.asarray(x) * std + mean  # noqa: E731
    report.save_image_grid(paths.join(workdir, "reconstructions.png"),
                           [to_pixels(images), to_pixels(masked), to_pixels(recon)],
                           ["original", "masked input", f"reconstruction (loss {float(loss):.3f})"])
