"""The agent runs inside any vLLM image: its files (agent_sources) import only the stdlib."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from runner.images.resources import agent_sources


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module is not None
            roots.add(node.module.split(".")[0])
    return roots


def test_agent_modules_import_only_the_standard_library() -> None:
    sources = agent_sources()
    names = {Path(relative).name for relative in sources if relative.startswith("runner/agent/")}
    assert names >= {"__main__.py", "core.py", "judge.py", "provenance.py", "util.py"}
    assert "runner/vendors/registry.py" in sources  # the agent discovers GPUs through it
    allowed = set(sys.stdlib_module_names) | {"runner"}  # runner: the files copied with it
    # The load generator runs with vLLM's own Python and imports vLLM's benchmark lazily, in
    # a function: importing the module needs the standard library only.
    lazily = {"runner/agent/loadgen.py": {"vllm"}}
    offenders = {
        relative: sorted(_imported_roots(path) - allowed - lazily.get(relative, set()))
        for relative, path in sources.items()
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_import_checker_catches_third_party(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom . import x\ndef f():\n    import click\n")
    assert _imported_roots(sample) - set(sys.stdlib_module_names) == {"click"}


# Imports the agent from the copied files alone: -I ignores PYTHONPATH, the user site and the
# current directory, -S skips site-packages, so a file missing from agent_sources() or a
# third-party import fails here as it would in a bare vLLM image.
_IMPORT_AGENT = """
import sys
sys.path.insert(0, sys.argv[1])
import runner.agent.__main__, runner.agent.core, runner.agent.loadgen
from runner.vendors import detect_vendor
outside = [m.__file__ for m in list(sys.modules.values())
           if getattr(m, "__file__", None) and m.__name__.split(".")[0] == "runner"
           and not m.__file__.startswith(sys.argv[1])]
assert not outside, outside
print(detect_vendor(lambda argv: None))
"""


def test_agent_sources_are_a_complete_standard_library_closure(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    for relative, source in agent_sources().items():
        target = bench / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _IMPORT_AGENT, str(bench)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cpu"
