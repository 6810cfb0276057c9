"""Every shell command in README.md and docs/*.md runs as written.

The commands are the lines of the ```bash / ```sh / ```shell blocks: a line ending in a
backslash continues on the next, `#` starts a comment (whole-line comments are prose).
Each command runs, in document order, in one scratch folder (so a command can read what
one above it wrote, e.g. the eval reading a converted export), with its program's rule:

- `make TARGET ...`                       -> `make -n TARGET ...` (make's dry run, in the checkout)
- `launch/tpu_pod.sh ...`                 -> with `--dry-run` (it would create cloud TPUs)
- `sbatch [OPTIONS] SCRIPT ARGS`          -> `bash SCRIPT --dry-run OPTIONS ARGS` (no Slurm here)
- `livt-train`, `python -m livt_jax.main`, `launch/gpu_host.sh`
                                          -> as written + TRAIN_TINY (a 1-block 32-wide ViT,
                                             32 px, 1 epoch per stage) on the CPU
- `livt-convert to-jax`                   -> as written + CONVERT_TINY (the same tiny model)
- `livt-convert to-torch`, `livt-cache`, `python -m livt_jax.experiments.ablation_stats`
                                          -> as written (the last reads docs/results)
- `python -m livt_jax.tools.benchmark`    -> as written + BENCH_TINY (tiny model, 1 step)

Data the commands name: absolute paths under /data and /ckpt are placed in the scratch
folder, where the fixture has put a tiny ImageNet-LT-style split list (4 classes, 40-px
JPEGs) at data/imagenet and tiny stand-ins of the release's checkpoints under their names.
A later option wins over an earlier one in every program, so the appended overrides
shrink the run without editing the command. `launch/...` names the checkout's script.

A command that cannot run here is marked in the doc with a trailing `# needs: WHAT`
comment (e.g. `# needs: a GPU machine ...`); a block whose line above is an HTML comment
`<!-- ... run as written by tests/FILE.py -->` is run by that test file instead. Both are
skipped here with their reason, so `pytest -rs` lists them. A command with no rule above and no marker fails: add a rule
here or mark it in the doc.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import procs

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = ("bash", "sh", "shell")
NEEDS = re.compile(r"#\s*needs:\s*(.+)$")
# An HTML comment just above a block that hands the whole block to another test file.
RUN_BY = re.compile(r"<!--.*run as written by (tests/\S+\.py)")
TIMEOUT_S = 900  # per command on an idle machine (procs.scaled stretches it under load)

TINY_DIMS = dict(embed_dim=32, depth=1, num_heads=2, patch_size=8, img_size=32)
TINY_DECODER = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
NUM_CLASSES = 4
MODEL_TINY = [f"--config.model.{k}={v}" for k, v in {**TINY_DIMS, **TINY_DECODER}.items()
              if k != "img_size"]
TRAIN_TINY = [*MODEL_TINY, "--config.data.image_size=32", "--config.pretrain.image_size=32",
              "--config.finetune.image_size=32", "--config.pretrain.epochs=1",
              "--config.finetune.epochs=1", "--config.pretrain.batch_size=8",
              "--config.finetune.batch_size=8", "--config.eval.batch_size=8",
              "--config.log_every_steps=1"]
CONVERT_TINY = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_DIMS, **TINY_DECODER}.items()]
CONVERT_TINY.append(f"--num-classes={NUM_CLASSES}")
BENCH_TINY = [*MODEL_TINY, "--config.data.image_size=32", "--batch=4", "--steps=1",
              "--warmup=1", "--dtype=float32"]
# Stand-ins for the release's checkpoints the README converts: file name -> kind.
RELEASE_CHECKPOINTS = {"livt_inat18_bft.pth": "vit", "livt_imagenet_lt_bft.pth": "vit",
                       "mgp_imagenet_lt.pth": "mae"}


@dataclass(frozen=True)
class DocCommand:
    """One command of a shell block: where it is, its text (continuations joined)."""
    path: str
    line: int
    text: str
    run_by: str | None = None  # the test file that runs this block's commands instead

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def needs(self) -> str | None:
        match = NEEDS.search(self.text)
        if match:
            return match.group(1).strip()
        return f"run as written by {self.run_by}" if self.run_by else None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def shell_commands(markdown: str, path: str = "<doc>") -> list[DocCommand]:
    """The commands of ``markdown``'s bash/sh/shell fenced blocks, in order."""
    commands, fence, pending, start = [], None, "", 0  # fence: the open block's language
    run_by, previous = None, ""
    for number, line in enumerate(markdown.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if fence is None:
                match = RUN_BY.search(previous)
                run_by = match.group(1) if match else None
            fence = None if fence is not None else stripped[3:].strip()
            previous = stripped
            continue
        if fence is None:
            previous = stripped or previous
            continue
        if fence not in SHELL_LANGS or (not pending and (not stripped or stripped.startswith("#"))):
            continue
        start = start if pending else number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        commands.append(DocCommand(path, start, (pending + stripped).strip(), run_by))
        pending = ""
    return commands


def doc_commands() -> list[DocCommand]:
    return [c for doc in DOCS
            for c in shell_commands(doc.read_text(encoding="utf-8"), str(doc.relative_to(REPO)))]


class NoRule(LookupError):
    pass


def in_scratch(word: str, scratch: Path) -> str:
    """``word`` with an absolute /data or /ckpt path (alone or after '=') moved into ``scratch``."""
    return re.sub(r"(^|=)/(data|ckpt)/", lambda m: f"{m.group(1)}{scratch}/{m.group(2)}/", word)


def invocation_for(argv: list[str], scratch: Path) -> tuple[list[str], Path]:
    """(argv to run, folder to run it in) for a documented command (module docstring)."""
    argv = [in_scratch(word, scratch) for word in argv]
    program = argv[0]
    # The checkout's scripts, run from the scratch folder (they find the checkout beside them).
    argv = [str(REPO / word) if word.startswith("launch/") else word for word in argv]
    if program == "make":
        return ["make", "-n", *argv[1:]], REPO
    if program == "sbatch":
        script = next(i for i, word in enumerate(argv) if word.endswith(".sbatch"))
        return ["bash", argv[script], "--dry-run", *argv[1:script], *argv[script + 1:]], scratch
    if program == "launch/tpu_pod.sh":
        return [argv[0], "--dry-run", *argv[1:]], scratch
    if program in ("livt-train", "launch/gpu_host.sh") or argv[:3] == ["python", "-m", "livt_jax.main"]:
        return [*argv, *TRAIN_TINY], scratch
    if argv[:2] == ["livt-convert", "to-jax"]:
        return [*argv, *CONVERT_TINY], scratch
    if (argv[:2] == ["livt-convert", "to-torch"] or program == "livt-cache"
            or argv[:3] == ["python", "-m", "livt_jax.experiments.ablation_stats"]):
        return argv, scratch
    if argv[:3] == ["python", "-m", "livt_jax.tools.benchmark"]:
        return [*argv, *BENCH_TINY], scratch
    raise NoRule(f"no rule to run {' '.join(argv)!r}: add one to tests/test_docs_commands.py "
                 "or mark the command in the doc with '# needs: WHAT'")


# ----------------------------------------------------------------------------- the scratch folder

def write_split_list(root: Path, rng: np.random.Generator) -> None:
    """data/imagenet: 4 classes of 40-px JPEGs, ImageNet_LT_{train,test}.txt (16 / 8 lines)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    lines = {"train": [], "test": []}
    for label, train_count in enumerate((8, 4, 2, 2)):
        for split, count in (("train", train_count), ("test", 2)):
            for i in range(count):
                name = f"{split}/n{label:04d}/{i}.jpg"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name)
                lines[split].append(f"{name} {label}\n")
    for split, split_lines in lines.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("".join(split_lines))


def write_release_checkpoint(path: Path, kind: str, rng: np.random.Generator) -> None:
    """A tiny timm-named `{'model': state_dict}` .pth of the tiny ViT or MAE."""
    import jax  # pylint: disable=import-outside-toplevel

    from livt_jax import state_dict_files  # pylint: disable=import-outside-toplevel
    from livt_jax.models import timm_convert  # pylint: disable=import-outside-toplevel

    model = {**TINY_DIMS, "num_classes": NUM_CLASSES, "global_pool": "avg"} if kind == "vit" \
        else {**TINY_DIMS, **TINY_DECODER}
    shapes = timm_convert.model_shapes(kind, **model)
    params = jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    state_dict = timm_convert.state_dict_from_params(params, img_size=TINY_DIMS["img_size"])
    state_dict_files.save_torch_state_dict(str(path), state_dict, wrap_model=True)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    pytest.importorskip("torch")  # the .pth stand-ins
    root = tmp_path_factory.mktemp("docs")
    for name in ("configs", "docs"):
        (root / name).symlink_to(REPO / name)
    rng = np.random.default_rng(0)
    write_split_list(root / "data" / "imagenet", rng)
    for name, kind in RELEASE_CHECKPOINTS.items():
        write_release_checkpoint(root / name, kind, rng)
    return root


def command_env() -> dict[str, str]:
    """A user's shell on the CPU: the installed commands on PATH, this checkout importable,
    one device (no test-suite XLA flags)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["JAX_PLATFORMS"] = "cpu"
    return env


# ----------------------------------------------------------------------------- tests

COMMANDS = doc_commands()


def test_extraction_joins_continuations_and_reads_markers():
    markdown = "\n".join([
        "text", "```bash", "# a comment line", "cmd --a 1 \\", "    --b 2  # trailing", "",
        "gpu-thing OUT  # needs: a GPU", "```", "```text", "not a command", "```",
        "```python", "print(1)", "```", "```sh", "other", "```"])
    commands = shell_commands(markdown, "x.md")
    assert [(c.line, c.argv, c.needs) for c in commands] == [
        (4, ["cmd", "--a", "1", "--b", "2"], None), (7, ["gpu-thing", "OUT"], "a GPU"),
        (16, ["other"], None)]


def test_blocks_handed_to_another_test_name_an_existing_file():
    markdown = "<!-- run as written by tests/test_x.py -->\n```bash\ncmd\n```\n```bash\nother\n```"
    assert [c.needs for c in shell_commands(markdown)] == ["run as written by tests/test_x.py", None]
    for command in COMMANDS:
        assert command.run_by is None or (REPO / command.run_by).is_file(), str(command)


def test_every_command_has_a_rule_or_a_marker(tmp_path):
    """Found commands in README and docs, each runnable by a rule unless marked."""
    assert len(COMMANDS) >= 20 and {c.path for c in COMMANDS} >= {"README.md", "docs/RESULTS.md"}
    unruled = []
    for command in COMMANDS:
        if command.needs is None:
            try:
                invocation_for(command.argv, tmp_path)
            except NoRule as e:
                unruled.append(f"{command}: {e}")
    assert not unruled, "\n".join(unruled)


def test_rules_dry_run_cloud_work_and_shrink_training(tmp_path):
    argv, cwd = invocation_for(["launch/tpu_pod.sh", "--zone", "z", "create"], tmp_path)
    assert argv[:2] == [str(REPO / "launch/tpu_pod.sh"), "--dry-run"] and cwd == tmp_path
    argv, _ = invocation_for(["sbatch", "--nodes", "2", "launch/slurm.sbatch", "--config", "c"], tmp_path)
    assert argv == ["bash", str(REPO / "launch/slurm.sbatch"), "--dry-run", "--nodes", "2",
                    "--config", "c"]
    argv, _ = invocation_for(["livt-train", "--config.data.data_dir=/data/imagenet"], tmp_path)
    assert argv[1] == f"--config.data.data_dir={tmp_path}/data/imagenet" and argv[2:] == TRAIN_TINY
    with pytest.raises(NoRule, match="no rule to run 'rm -rf x'"):
        invocation_for(["rm", "-rf", "x"], tmp_path)


@pytest.mark.e2e
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.path}:{c.line}" for c in COMMANDS])
def test_doc_command_runs(command, scratch):
    if command.needs:
        pytest.skip(f"needs: {command.needs} -- {command.text}")
    argv, cwd = invocation_for(command.argv, scratch)
    out = procs.run(argv, cwd=cwd, env=command_env(), capture_output=True, text=True,
                    timeout=TIMEOUT_S)
    assert out.returncode == 0, (f"{command}\nran: {shlex.join(argv)}\nexit {out.returncode}\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
