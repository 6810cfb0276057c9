"""The device benchmark's report: rows with MFU and speed-ups, and the Markdown page.

``device_bench`` runs the sections; this module turns their records
(``{name: {'status', 'seconds', 'error'?, 'result'?}}``) into ``results.json`` rows and
``results.md``. Section names are ``env``, ``attention``, ``host``,
``jax-{stage}-{lever}`` and ``torch-{stage}-{mode}`` with the keys below.
"""

from __future__ import annotations

from pathlib import Path

STAGE_NAMES = {"finetune": "BFT", "pretrain": "MGP"}
LEVERS = {
    "default": "JAX, XLA attention (default step)",
    "cudnn": "JAX + cuDNN attention, tokens padded to x16",
    "device-augment": "JAX + on-device crop/flip (uint8 input)",
}
TORCH_MODES = {"eager": "PyTorch timm, eager bf16 autocast (release)",
               "compile": "PyTorch timm, torch.compile"}


def table_rows(sections: dict[str, dict]) -> list[dict]:
    """One row per jax/torch section, with MFU against the env section's GEMM peak
    and the speed-up over the eager PyTorch step of the same stage."""
    peak = sections.get("env", {}).get("result", {}).get("gemm_peak_flops")
    rows = []
    for name, record in sections.items():
        kind, _, rest = name.partition("-")
        if kind not in ("jax", "torch"):
            continue
        stage, _, variant = rest.partition("-")
        label = (LEVERS if kind == "jax" else TORCH_MODES)[variant]
        row = {"section": name, "stage": stage, "workload": STAGE_NAMES[stage],
               "implementation": label, "status": record["status"]}
        result = record.get("result")
        if result and variant == "cudnn" and result["attention"] != "cudnn":
            row["implementation"] += f" ({result['attention']}: no cuDNN on this platform)"
        if result:
            row.update(img_s=result["img_s"], step_ms=result["step_ms"], mem_gib=result["mem_gib"],
                       analytic_flops=result["analytic_flops"], xla_flops=result["xla_flops"])
            if peak:
                row["mfu"] = result["img_s"] * result["analytic_flops"] / peak
                row["mfu_xla"] = result["img_s"] * result["xla_flops"] / peak or None
        rows.append(row)
    for row in rows:
        eager = sections.get(f"torch-{row['stage']}-eager", {}).get("result")
        if eager and "img_s" in row:
            row["vs_torch_eager"] = row["img_s"] / eager["img_s"]
    return rows


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def markdown(results: dict) -> str:
    """The report: device line, correctness, the speed table, host augmentation, sections."""
    sections = results["sections"]
    env = sections.get("env", {}).get("result")
    lines = [f"# livt-jax device benchmark ({results['size']}, {results['started']})", ""]
    if env:
        v = env["versions"]
        lines.append(f"{env['device_kind']} ×{env['device_count']} ({env['platform']}), Python "
                     f"{env['python']}, jax {v['jax']}, flax {v['flax']}, torch {v['torch']}, "
                     f"timm {v['timm']}; measured GEMM peak "
                     f"{env['gemm_peak_flops'] / 1e12:.3g} TFLOP/s (the MFU denominator).")
    attention = sections.get("attention", {}).get("result")
    if attention:
        a, x = attention["padded_bf16"], attention["xla_bf16"]
        verdict = "pass" if attention["passed"] else "FAIL"
        lines.append(f"Correctness ({verdict}): {attention['attention']} attention on "
                     f"{attention['tokens']}→{attention['padded_to']} tokens vs f32 XLA: logits "
                     f"{a['logits_rel_err']:.2e}, grads {a['grads_rel_err']:.2e} (plain bf16 XLA: "
                     f"{x['logits_rel_err']:.2e}, {x['grads_rel_err']:.2e}).")
    lines += ["", "| workload | implementation | img/s | step ms | MFU | MFU (XLA) | peak GiB "
              "| × torch eager | status |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table_rows(sections):
        lines.append(
            f"| {r['workload']} | {r['implementation']} | {_fmt(r.get('img_s'), ',.0f')} "
            f"| {_fmt(r.get('step_ms'), '.1f')} | {_fmt(r.get('mfu'), '.1%')} "
            f"| {_fmt(r.get('mfu_xla'), '.1%')} | {_fmt(r.get('mem_gib'), '.1f')} "
            f"| {_fmt(r.get('vs_torch_eager'), '.2f')} | {r['status']} |")
    host = sections.get("host", {}).get("result")
    if host:
        lines += ["", f"Host BFT augmentation, one core, {host['image_side']}-px images → "
                      f"{host['crop']} px: ours {host['ours_img_s_per_core']:.0f} img/s, timm "
                      f"{host['timm_img_s_per_core']:.0f} img/s, ratio {host['ratio']:.2f}."]
    lines += ["", "| section | status | seconds | note |", "|---|---|---|---|"]
    for name, record in sections.items():
        lines.append(f"| {name} | {record['status']} | {record['seconds']:.0f} "
                     f"| {record.get('error') or ''} |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
