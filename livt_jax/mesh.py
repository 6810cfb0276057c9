"""Device mesh and shardings: data parallel × FSDP, the same code on 1 CPU or a pod.

The mesh has two axes, `data` and `fsdp`; a batch is split over both, and each
parameter (and its optimizer moments) is split over `fsdp` along its largest
dimension that divides evenly. With `fsdp = 1` this is plain data parallelism.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXES = ("data", "fsdp")


def mesh_shape(data: int, fsdp: int, num_devices: int) -> tuple[int, int]:
    """`(data, fsdp)` sizes from `config.mesh` for `num_devices` (-1 in one axis takes
    the rest); a ValueError naming the keys when they do not fit the devices."""
    if data == -1 and fsdp == -1:
        raise ValueError("at most one of mesh.data and mesh.fsdp may be -1")
    sizes = (data, fsdp)
    if data == -1:
        sizes = (num_devices // fsdp if fsdp > 0 and num_devices % fsdp == 0 else 0, fsdp)
    if fsdp == -1:
        sizes = (data, num_devices // data if data > 0 and num_devices % data == 0 else 0)
    if sizes[0] * sizes[1] != num_devices or min(sizes) <= 0:
        raise ValueError(f"mesh.data={data} × mesh.fsdp={fsdp} does not match the {num_devices} "
                         f"devices; use sizes whose product is {num_devices} (-1 takes the rest)")
    return sizes


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default: all); -1 in one axis takes the rest."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(mesh_shape(data, fsdp, len(devices)), ("data", "fsdp"),
                         axis_types=(AxisType.Auto,) * 2, devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over every device."""
    return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int = 2 ** 14) -> P:
    """Shards the largest divisible dimension over `fsdp`; small arrays stay replicated."""
    if fsdp_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(mesh: Mesh, abstract_state: Any) -> Any:
    """NamedShardings for a pytree of `jax.ShapeDtypeStruct` (e.g. from eval_shape)."""
    fsdp_size = mesh.shape["fsdp"]
    return jax.tree_util.tree_map(
        lambda leaf: NamedSharding(mesh, fsdp_spec(leaf.shape, fsdp_size)), abstract_state)


def sharded_abstract(abstract: Any, shardings: Any) -> Any:
    """`jax.ShapeDtypeStruct`s of `abstract` carrying `shardings` (a restore target)."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
    """Raises a clear error when the global batch does not split over the devices."""
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"global batch size {global_batch} does not divide over the {n} devices of the mesh "
            f"(data={mesh.shape['data']}, fsdp={mesh.shape['fsdp']}); use a multiple of {n}")
    if global_batch % jax.process_count():
        raise ValueError(f"global batch size {global_batch} does not divide over "
                         f"{jax.process_count()} processes")


def describe(mesh: Mesh, global_batch: int) -> str:
    """One line saying what a run found: JAX, backend, processes, devices, mesh, batch split."""
    devices = mesh.devices.size
    return (f"JAX {jax.__version__}, backend {jax.default_backend()}, "
            f"{jax.process_count()} process(es), {devices} device(s) "
            f"({jax.local_device_count()} local, {mesh.devices.flat[0].device_kind}), "
            f"mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}, "
            f"global batch {global_batch} = {global_batch // devices} per device")


def global_batch_from_local(mesh: Mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles per-process numpy batches into global arrays split over the data axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}
