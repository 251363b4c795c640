"""The shipped product apart from its test bed, and the layers inside it.

What every VM installs (`pip install .`) is the agent, the coordinator, the registry and
the CLI with their core dependencies; the emulator, the local ZooKeeper, the demo, chaos
and the workloads are the test bed (`testbed/`, a distribution of its own). Judged from
the real artefacts: the wheels built offline, and the product run from its wheel alone
with the test bed and the test-only libraries made unimportable.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("registry", "agent", "coordinator", "quorumgate")
LAYERS = {
    "registry": set(),
    "agent": {"registry"},
    "coordinator": {"registry"},
    "quorumgate": {"registry", "agent", "coordinator"},
}
"""Which of the product's packages each may import: nothing runs up the layers."""
CORE = {"fastapi", "uvicorn", "kazoo", "httpx", "pydantic", "prometheus-client", "pyyaml"}
NOT_ON_A_VM = ("imds_sim", "quorumgate_testbed", "psycopg", "selenium", "confluent_kafka",
               "hypothesis", "testcontainers", "matplotlib", "pytest", "bench", "tests")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built offline from a copy of the sources (setuptools writes `build/`
    and `*.egg-info` next to what it builds: never into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in (*PRODUCT, "testbed"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(src), str(src / "testbed")],
                   check=True, timeout=300, capture_output=True)
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {"quorumgate", "quorumgate_testbed"}, found
    return found


def _metadata(wheel: Path) -> tuple[set[str], list[str]]:
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist() if ".dist-info" not in name}
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    return tops, requires


def _name(requirement: str) -> str:
    for stop in "[<>=;! ":
        requirement = requirement.split(stop)[0]
    return requirement.lower()


def test_the_product_wheel_ships_no_test_bed(wheels: dict[str, Path]) -> None:
    tops, requires = _metadata(wheels["quorumgate"])
    assert tops == set(PRODUCT)
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE, core
    tops, requires = _metadata(wheels["quorumgate_testbed"])
    assert tops == {"imds_sim", "quorumgate_testbed"}
    assert {_name(r) for r in requires} >= {"quorumgate", "psycopg"}


def test_the_product_runs_from_its_wheel_without_the_test_bed(
        wheels: dict[str, Path], tmp_path: Path) -> None:
    """Every product module imports, and the agent, coordinator and operator commands
    answer, with nothing but the product wheel and its core dependencies importable."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheels["quorumgate"])], check=True, timeout=300,
                   capture_output=True)
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        BLOCKED = {NOT_ON_A_VM!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(target)!r})
        for pkg in {PRODUCT!r}:
            module = importlib.import_module(pkg)
            assert module.__file__.startswith({str(target)!r}), module.__file__
            for info in pkgutil.walk_packages(module.__path__, pkg + "."):
                importlib.import_module(info.name)
        from quorumgate.cli import main
        for command in (["agent", "--help"], ["coordinator", "--help"], ["events", "--help"]):
            try:
                code = main(command)
            except SystemExit as exit:
                code = exit.code
            assert code in (0, None), (command, code)
        assert main(["demo"]) == 2
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("OK"), (
        result.stdout[-2000:] + result.stderr[-3000:])
    assert "part of the test bed, which is not installed here" in result.stderr


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for each import in `path`."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level count too
        if isinstance(node, ast.If | ast.Try):
            top_level |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(name.split(".")[0], id(node) in top_level) for name in names]
    return out


def test_no_import_runs_up_the_layers_and_kazoo_stays_in_the_adapter() -> None:
    wrong = []
    for pkg in PRODUCT:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for module, eager in _imports(path):
                if module in PRODUCT and module != pkg and module not in LAYERS[pkg]:
                    wrong.append(f"{rel} imports {module} (up the layers)")
                if module in NOT_ON_A_VM and (eager or module != "confluent_kafka"):
                    wrong.append(f"{rel} imports {module} (test bed or an optional extra "
                                 "at module level)")
                if module == "kazoo" and rel != "registry/zookeeper.py":
                    wrong.append(f"{rel} imports kazoo (only the adapter does)")
    assert wrong == []


def test_the_test_bed_reaches_zookeeper_through_the_adapter_too() -> None:
    users = [path.relative_to(ROOT).as_posix()
             for path in sorted((ROOT / "testbed").rglob("*.py"))
             if any(module == "kazoo" for module, _ in _imports(path))]
    assert users == []
