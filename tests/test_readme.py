"""The READMEs say things the tests can hold them to: the plain-loading snippet is the file the
bundle tests run, and every benchmark command names a module that exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_readme_snippet_is_the_file_the_tests_run():
    source = (ROOT / "tests" / "plain_loading_snippet.py").read_text()
    docstring_end = ast.parse(source).body[0].end_lineno
    code = "\n".join(source.splitlines()[docstring_end:]).strip() + "\n"
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert any(block == code for block in blocks), (
        "README.md's plain-loading snippet differs from tests/plain_loading_snippet.py (below its docstring)")


def test_benchmark_commands_name_existing_modules():
    text = (ROOT / "README.md").read_text() + (ROOT / "benchmarks" / "README.md").read_text()
    modules = set(re.findall(r"python -m benchmarks\.(\w+)", text)) | set(re.findall(r"benchmarks\.(\w+)`", text))
    assert modules, "no benchmark commands found"
    missing = sorted(m for m in modules if not (ROOT / "benchmarks" / f"{m}.py").is_file())
    assert not missing, f"benchmark modules named in the READMEs but not in benchmarks/: {missing}"
