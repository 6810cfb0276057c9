"""Packaging: the installed package imports, declares what it imports, and has its commands.

The package is installed with `pip install --no-deps --target` (against the
packages of this environment) from a copy holding only what setup.py ships,
so a module left out of the package, an import of a repo-only file or an
import no requirement provides fails here rather than on a user's machine.
"""

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import procs
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "livt_jax"
HEAVY = ("torch", "tensorflow", "timm")
# Modules that are PyTorch code by nature (the timm reference the benchmarks time):
# they need the `torch` extra at import, and the rest of the package imports them lazily.
TORCH_MODULES = {"livt_jax.tools.torch_reference"}
COMMANDS = {  # console command -> text its --help must show
    "livt-train": ["usage: livt-train", "Train and evaluate", "--workdir", "--verbosity"],
    "livt-convert": ["usage: livt-convert", "to-jax", "to-torch"],
    "livt-benchmark": ["usage: livt-benchmark", "--compare-torch", "Train-step speed"],
    "livt-cache": ["usage: livt-cache", "--resize-shorter"],
    "livt-predict": ["usage: livt-predict", "Classify image files", "--top-k"],
    "livt-adjust": ["usage: livt-adjust", "Re-score saved eval logits", "--method"],
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps --target SITE` of a copy of setup.py, README.md, livt_jax/
    and configs/."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("livt_jax", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path_factory.mktemp("site")
    procs.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True, timeout=300)
    return site


def _run(args, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    return procs.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _source_modules() -> set[str]:
    """Dotted names of every module and subpackage in the source tree."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    configs = {f"livt_jax.configs.{path.stem}" for path in (REPO / "configs").glob("*.py")}
    return (names | configs | {"livt_jax.configs"}) - {"livt_jax", "livt_jax.configs.__init__"}


def test_every_module_imports_from_the_installed_copy(installed, tmp_path):
    # livt_jax.main and livt_jax.tools.benchmark both define --config: import main on its own.
    code = """
import importlib, pkgutil, sys, livt_jax
assert livt_jax.__file__.startswith(sys.argv[1]), livt_jax.__file__
names = [m.name for m in pkgutil.walk_packages(livt_jax.__path__, "livt_jax.")]
for name in names if sys.argv[2] == "all" else ["livt_jax.main"]:
    if (sys.argv[2] == "main" or name != "livt_jax.main") and name not in %r:
        importlib.import_module(name)
print("HEAVY", sorted(m for m in %r if m in sys.modules))
print("MODULES", *names)
""" % (TORCH_MODULES, HEAVY)
    for which in ("all", "main"):
        out = _run([sys.executable, "-c", code, str(installed), which], installed, tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "HEAVY []" in out.stdout, out.stdout  # torch, TensorFlow: optional
    modules = out.stdout.split("MODULES")[1].split()
    assert set(modules) == _source_modules()  # nothing left out of the package


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level name, imported at module level?) of each absolute import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [(name.partition(".")[0], id(node) in module_level) for name in names]
    return found


def test_every_import_is_declared(installed):
    """Module-level imports need a core requirement; lazy ones (in functions) and those of
    the PyTorch-only modules may use an extra."""
    (dist,) = importlib.metadata.distributions(path=[str(installed)])
    core, extras = set(), set()
    for requirement in map(Requirement, dist.requires):
        (extras if requirement.marker else core).add(canonicalize_name(requirement.name))
    providers = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        torch_module = ".".join(path.relative_to(REPO).with_suffix("").parts) in TORCH_MODULES
        for name, module_level in _imports(path):
            if name in sys.stdlib_module_names or name in ("livt_jax", "__future__"):
                continue
            dists = {canonicalize_name(d) for d in providers.get(name, [])}
            allowed = core if module_level and not torch_module else core | extras
            if not dists & allowed:
                where = "module level" if module_level else "inside a function"
                declared = "in install_requires" if module_level else "in any requirement"
                problems.append(f"{path.relative_to(REPO)}: `{name}` ({where}) comes from "
                                f"{sorted(dists) or 'no installed distribution'}, not declared "
                                f"{declared} of setup.py")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_console_command_help(installed, tmp_path, command):
    script = installed / "bin" / command
    assert script.exists(), f"setup.py declares no {command} console script"
    out = _run([str(script), "--help"], installed, tmp_path)
    text = out.stdout + out.stderr
    for expected in COMMANDS[command]:
        assert expected in text, f"{command} --help lacks {expected!r}:\n{text[-2000:]}"


def test_installed_package_ships_the_dataset_configs(installed, tmp_path):
    """`--config NAME[:ARG]` works from an install, away from any checkout."""
    code = ("from livt_jax import config_lib; import sys; "
            "assert config_lib.config_dir().startswith(sys.argv[1]), config_lib.config_dir(); "
            "c = config_lib.load_config_file('cifar_lt:cifar100,50'); "
            "print('LOADED', c.data.name, c.data.imbalance_ratio, *config_lib.shipped_configs())")
    out = _run([sys.executable, "-c", code, str(installed)], installed, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED cifar100 50.0 cifar10_lt cifar_lt demo imagenet_lt inat18 places_lt" in out.stdout


# The library: the core modules, models, data and step code. Tools and experiments import it.
LIBRARY = [*PACKAGE.glob("*.py"), *(PACKAGE / "models").rglob("*.py"),
           *(PACKAGE / "data").rglob("*.py"), *(PACKAGE / "step").rglob("*.py")]
ABOVE_THE_LIBRARY = ("livt_jax.tools", "livt_jax.experiments")


def _livt_modules(source: str) -> set[str]:
    """Dotted livt_jax names an import statement anywhere in `source` names
    (`from livt_jax import tools` names `livt_jax.tools`)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "livt_jax"}


def _imports_above(names: set[str]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in ABOVE_THE_LIBRARY)}


def test_import_scan_sees_every_form():
    """The scan below catches each way of writing an import, at any depth."""
    source = ("import livt_jax.tools.cache\n"
              "def f():\n    from livt_jax import experiments, losses\n"
              "from livt_jax.experiments.study import run\n"
              "from livt_jax.data import pipeline\n")
    assert _imports_above(_livt_modules(source)) == {
        "livt_jax.tools.cache", "livt_jax.experiments", "livt_jax.experiments.study",
        "livt_jax.experiments.study.run"}


def test_library_never_imports_tools_or_experiments():
    """Arrows point one way: tools and experiments import the library, never the reverse."""
    assert len(LIBRARY) > 20 and PACKAGE / "train.py" in LIBRARY
    problems = [f"{path.relative_to(REPO)} imports {sorted(bad)}" for path in sorted(LIBRARY)
                if (bad := _imports_above(_livt_modules(path.read_text(encoding="utf-8"))))]
    assert not problems, "\n".join(problems)
