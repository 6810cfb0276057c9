"""The GPU measurement in one call: checks, then every lever, then the PyTorch reference.

``launch/device_bench.sh OUT_DIR`` installs the wheelhouse offline and runs::

  python -m livt_jax.tools.device_bench run --out OUT_DIR [--size full|tiny] [--budget-s S] [--only A,B]

Each section runs in its own process under its own time limit (a hang costs
that section, not the run), in this order:

  env        versions and the bf16 GEMM peak (8192^3) every MFU is measured against
  attention  cuDNN attention on tokens padded to a multiple of 16 vs XLA on the
             unpadded tokens: ViT logits and gradients, bf16, against an f32 reference
  jax-*      ``benchmark.benchmark_stage`` of BFT and MGP: the default step, then each
             lever on its own (cuDNN attention with padding; on-device crop/flip);
             a row counts only if the loss after its steps is finite
  torch-*    the timm/PyTorch step, eager bf16 autocast (the release's path) and
             ``torch.compile``, same model and batch
  host       host augmentation per core: ours vs timm's transform (one core)

After every section ``OUT_DIR/results.json`` and ``OUT_DIR/results.md`` are
rewritten (``device_bench_report``), so a run cut short keeps what it measured. ``--size tiny`` is the
CPU rehearsal (a 32-wide ViT; cuDNN rows fall back to XLA with padding, and say so).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp

from livt_jax import console
from livt_jax.config_lib import load_config_file, stage_image_size
from livt_jax.models import factory
from livt_jax.tools import benchmark
from livt_jax.tools.device_bench_report import (LEVERS, STAGE_NAMES, TORCH_MODES, markdown,
                                               table_rows, write_atomic)

# budget_s: seconds for all sections of a run (the kit's 8 minutes on one H100, less the
# install; the tiny rehearsal is sized for a slow shared CPU).
SIZES = {
    "full": dict(config="imagenet_lt", batch=256, steps=20, warmup=3, model={}, budget_s=420.0,
                 host=dict(images=600, side=256, image_size=224, batch=128, steps=4)),
    "tiny": dict(config="demo", batch=16, steps=2, warmup=1, budget_s=1800.0,
                 model=dict(embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
                            decoder_depth=1, decoder_num_heads=2),
                 host=dict(images=48, side=40, image_size=32, batch=16, steps=2)),
}
PAD_MULTIPLE = 16


@dataclasses.dataclass(frozen=True)
class Section:
    """One step of the run: ``command`` (argv) writes its result as JSON to the path
    appended as its last argument, within ``timeout_s`` seconds."""

    name: str
    command: list[str]
    timeout_s: float


# ----------------------------------------------------------------------------- configs

def stage_config(size: str, lever: str = "default"):
    """The size's config with bf16 compute and ``lever`` switched on."""
    spec = SIZES[size]
    config = load_config_file(spec["config"], lock=False)
    config.model.update(spec["model"])
    config.model.dtype = "bfloat16"
    if lever == "cudnn":
        config.model.attention = fast_attention()
        config.model.pad_tokens_to = PAD_MULTIPLE
    elif lever == "device-augment":
        config.data.device_augment = True
    elif lever != "default":
        raise ValueError(f"lever={lever!r}; expected one of {sorted(LEVERS)}")
    return config


def fast_attention() -> str:
    """'cudnn' on a GPU; elsewhere 'xla' (cuDNN exists on NVIDIA GPUs only)."""
    return "cudnn" if jax.default_backend() == "gpu" else "xla"


# ----------------------------------------------------------------------------- sections

def env_section(size: str) -> dict:
    """Versions, devices and the measured GEMM peak (FLOP/s)."""
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "torch",
                 "timm", "pillow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    installed_from = {name: importlib.util.find_spec(name).origin
                      for name in ("grain", "ml_collections", "tensorflow_datasets")}
    device = jax.devices()[0]
    return {"size": size, "python": sys.version.split()[0], "versions": versions,
            "installed_from": installed_from,
            "platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), "gemm_peak_flops": benchmark.gemm_peak_flops()}


def attention_section(size: str, batch: int = 8) -> dict:
    """cuDNN attention on padded tokens vs XLA attention: logits and parameter gradients.

    Both run in bf16 from the same f32 parameters (the head re-drawn with std
    1/sqrt(D) so that logits are O(1)) and are compared with an f32 XLA run:
    relative L2 errors ``|x - ref| / |ref|``. Passes when the padded path's
    error is within twice the plain bf16 path's error plus 1e-3, for both.
    """
    base = stage_config(size)
    fast = stage_config(size, "cudnn")
    image = stage_image_size(base, "finetune")
    shape = (batch, image, image, base.data.in_chans)
    k_img, k_head, k_w = jax.random.split(jax.random.key(0), 3)
    images = jax.random.normal(k_img, shape)

    def model(config, dtype):
        config.model.dtype = dtype
        return factory.build_vit(config.model, config.data.in_chans, 1000, image, drop_path=0.0)

    reference = model(stage_config(size), "float32")
    params = reference.init(jax.random.key(1), images[:1], train=False)["params"]
    head = params["head"]["kernel"]
    params["head"]["kernel"] = jax.random.normal(k_head, head.shape) / math.sqrt(head.shape[0])
    weights = jax.random.normal(k_w, (batch, 1000))

    def logits_and_grads(vit):
        def loss(p):
            logits = vit.apply({"params": p}, images, train=False)
            return jnp.sum(logits * weights), logits
        (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        flat = jnp.concatenate([g.astype(jnp.float32).ravel() for g in jax.tree.leaves(grads)])
        return logits.astype(jnp.float32), flat

    with jax.default_matmul_precision("highest"):  # no TF32 in the f32 reference
        ref_logits, ref_grads = logits_and_grads(reference)
    results = {}
    for name, vit in (("xla_bf16", model(base, "bfloat16")), ("padded_bf16", model(fast, "bfloat16"))):
        logits, grads = logits_and_grads(vit)
        results[name] = {
            "logits_rel_err": float(jnp.linalg.norm(logits - ref_logits) / jnp.linalg.norm(ref_logits)),
            "grads_rel_err": float(jnp.linalg.norm(grads - ref_grads) / jnp.linalg.norm(ref_grads))}
    tokens = (image // factory.model_dims(base.model)["patch_size"]) ** 2 + 1
    passed = all(
        math.isfinite(results["padded_bf16"][key])
        and results["padded_bf16"][key] <= 2 * results["xla_bf16"][key] + 1e-3
        for key in ("logits_rel_err", "grads_rel_err"))
    return {"attention": fast.model.attention, "tokens": tokens,
            "padded_to": -(-tokens // PAD_MULTIPLE) * PAD_MULTIPLE, **results, "passed": passed}


def jax_section(size: str, stage: str, lever: str) -> dict:
    """``benchmark.benchmark_stage`` of one stage with one lever."""
    spec = SIZES[size]
    config = stage_config(size, lever)
    row = benchmark.benchmark_stage(config, stage, spec["batch"], spec["steps"], spec["warmup"])
    return {**row, "attention": config.model.attention}


def torch_section(size: str, stage: str, mode: str) -> dict:
    """The timm/PyTorch step of one stage, eager or compiled."""
    # torch only where it is timed: jax processes stay free of it.
    from livt_jax.tools import torch_reference  # pylint: disable=import-outside-toplevel

    spec = SIZES[size]
    config = stage_config(size)
    row = torch_reference.benchmark_stage(config, stage, spec["batch"], spec["steps"],
                                          spec["warmup"], compile_model=mode == "compile")
    return {**row, "analytic_flops": benchmark.analytic_train_flops(config, stage, 1000),
            "xla_flops": 0.0}


def host_section(size: str) -> dict:
    """Host BFT augmentation per core, ours vs timm's, via the data benchmark's ``--vs-timm``."""
    spec = SIZES[size]["host"]
    argv = [sys.executable, "-m", "livt_jax.tools.data_benchmark", "--synthetic",
            f"{spec['images']},{spec['side']}", "--image-size", str(spec["image_size"]),
            "--batch-size", str(spec["batch"]), "--steps", str(spec["steps"]),
            "--kinds", "bft", "--vs-timm"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    print(out, flush=True)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    ours, timm = float(rows["synthetic"][-2]), float(rows["timm"][-2])
    return {"ours_img_s_per_core": ours, "timm_img_s_per_core": timm, "ratio": ours / timm,
            "image_side": spec["side"], "crop": spec["image_size"]}


def section_function(name: str) -> Callable[[str], dict]:
    """``env``, ``attention``, ``host``, ``jax-STAGE-LEVER`` or ``torch-STAGE-MODE``."""
    simple = {"env": env_section, "attention": attention_section, "host": host_section}
    if name in simple:
        return simple[name]
    kind, _, rest = name.partition("-")
    stage, _, variant = rest.partition("-")
    if kind == "jax" and stage in STAGE_NAMES and variant in LEVERS:
        return lambda size: jax_section(size, stage, variant)
    if kind == "torch" and stage in STAGE_NAMES and variant in TORCH_MODES:
        return lambda size: torch_section(size, stage, variant)
    raise ValueError(f"unknown section {name!r}; expected one of {section_names()}")


def section_names() -> list[str]:
    """Every section, in the order a run takes them (most needed first)."""
    jax_rows = [f"jax-{stage}-{lever}" for lever in ("default", "cudnn") for stage in STAGE_NAMES]
    torch_rows = [f"torch-{stage}-{mode}" for mode in TORCH_MODES for stage in STAGE_NAMES]
    later = [f"jax-{stage}-device-augment" for stage in STAGE_NAMES]
    return ["env", "attention", *jax_rows, *torch_rows, *later, "host"]


def section_timeout(name: str, size: str) -> float:
    """Seconds a section may take: compile-heavy ones get more."""
    if size == "tiny":
        return 240.0
    if name.endswith("-compile"):
        return 180.0
    return {"env": 60.0, "attention": 120.0, "host": 90.0}.get(
        name, 90.0 if name.startswith("torch") else 120.0)


# ----------------------------------------------------------------------------- running

def run_section(section: Section, timeout_s: float) -> dict:
    """Runs one section in its own process group; kills the group at ``timeout_s``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        proc = subprocess.Popen([*section.command, str(result_path)], start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"status": "timeout", "seconds": time.perf_counter() - start,
                    "error": f"no result within {timeout_s:.0f} s"}
        seconds = time.perf_counter() - start
        if code != 0 or not result_path.exists():
            return {"status": "failed", "seconds": seconds, "error": f"exit status {code}"}
        record = json.loads(result_path.read_text())
    return {"seconds": seconds, **record}


def run_sections(sections: list[Section], budget_s: float, on_result: Callable[[str, dict], None],
                 min_s: float = 15.0) -> None:
    """Runs ``sections`` in order within ``budget_s`` seconds in all; ``on_result(name, record)``
    after each. A section gets ``min(timeout, time left)``; with under ``min_s`` left it is skipped."""
    deadline = time.perf_counter() + budget_s
    for section in sections:
        left = deadline - time.perf_counter()
        if left < min_s:
            on_result(section.name, {"status": "skipped", "seconds": 0.0,
                                     "error": f"{left:.0f} s of the {budget_s:.0f} s budget left"})
            continue
        print(f"== {section.name} (limit {min(section.timeout_s, left):.0f} s)", flush=True)
        on_result(section.name, run_section(section, min(section.timeout_s, left)))


def child_main(name: str, size: str, result_path: str) -> None:
    """Runs one section and writes ``{"status": "ok"|"failed", "result": ...}``.

    Sections that time torch or the host keep jax (and their subprocesses' jax) off
    the GPU: it would take 75% of its memory on first use."""
    if not name.startswith(("jax", "env", "attention")):
        os.environ["JAX_PLATFORMS"] = "cpu"
        jax.config.update("jax_platforms", "cpu")
    result = section_function(name)(size)
    status, error = "ok", None
    if "loss" in result and not math.isfinite(result["loss"]):
        status, error = "failed", f"non-finite loss {result['loss']} after the timed steps"
    if name == "attention" and not result["passed"]:
        status, error = "failed", "padded cuDNN attention is off the XLA path beyond bf16 tolerance"
    Path(result_path).write_text(json.dumps({"status": status, "error": error, "result": result}))


def run_main(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else section_names()
    if "env" not in names:  # every run reports its versions and its own GEMM peak
        names.insert(0, "env")
    for name in names:
        section_function(name)  # unknown names fail here, before anything runs
    sections = [Section(name, [sys.executable, "-m", "livt_jax.tools.device_bench", "section", name,
                               "--size", args.size], section_timeout(name, args.size))
                for name in names]
    results = {"size": args.size, "budget_s": args.budget_s or SIZES[args.size]["budget_s"],
               "sections": {},
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    def on_result(name: str, record: dict) -> None:
        results["sections"][name] = record
        results["rows"] = table_rows(results["sections"])
        write_atomic(out / "results.json", json.dumps(results, indent=1))
        write_atomic(out / "results.md", markdown(results))
        print(f"== {name}: {record['status']} in {record['seconds']:.0f} s "
              f"{record.get('error') or ''}", flush=True)

    run_sections(sections, results["budget_s"], on_result)
    print(markdown(results), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = console.command_parser("python -m livt_jax.tools.device_bench", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="every section (or --only), results into --out")
    run.add_argument("--out", required=True, help="folder for results.json and results.md")
    run.add_argument("--size", default="full", choices=sorted(SIZES))
    run.add_argument("--budget-s", type=float, default=None,
                     help="seconds for all sections together (default: the size's budget_s)")
    run.add_argument("--only", default="",
                     help=f"comma-separated subset of {section_names()} (env always runs)")
    one = sub.add_parser("section", help="one section (what `run` starts in a subprocess)")
    one.add_argument("name")
    one.add_argument("--size", default="full", choices=sorted(SIZES))
    one.add_argument("result", help="where to write the section's JSON")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_main(args)
    else:
        child_main(args.name, args.size, args.result)


if __name__ == "__main__":
    main()
