"""results/ reads run directories through the contract alone: it imports no other runner module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"runner.rundir"}  # the run-directory contract, standard library only


def _runner_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "runner"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "runner":
                found |= {f"runner.{a.name}" for a in node.names}
            elif node.module.split(".")[0] == "runner":
                found.add(node.module)
    return found


def test_results_imports_only_the_run_directory_contract_from_runner() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_runner_imports(path) - ALLOWED)
        for path in sorted((ROOT / "results").rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_both_import_forms(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import runner.cli\nfrom runner import rundir, entry\nfrom runner.jobs import x\n"
    )
    assert _runner_imports(sample) == {"runner.cli", "runner.rundir", "runner.entry", "runner.jobs"}
