"""The package's layout as the README and the style promise it: every equation's code where the README's table says,
library modules without argparse or another module's private names, and modules and functions a reader holds on a
screen."""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import sr3_edu

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sr3_edu"
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60  # code lines: the docstring and the parameter list are not counted


def math_table() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The math, and where it lives", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| equation")]


def resolve(name: str):
    """`module.attr…` or `Class.attr…` (a public name of the package) → the object; None if it does not exist."""
    head, *rest = name.split(".")
    try:
        obj = importlib.import_module(f"sr3_edu.{head}")
    except ModuleNotFoundError:
        modules = pkgutil.walk_packages([str(PACKAGE)], "sr3_edu.")
        owners = [importlib.import_module(m.name) for m in modules if m.name != "sr3_edu.__main__"]
        obj = next((getattr(m, head) for m in [sr3_edu, *owners] if hasattr(m, head)), None)
        if obj is None:
            return None
    for part in rest:
        if isinstance(obj, type) and part in getattr(obj, "__dataclass_fields__", {}):
            return obj  # a dataclass field: it exists on instances
        if not hasattr(obj, part):
            try:  # a submodule not imported by its package
                obj = importlib.import_module(f"{obj.__name__}.{part}")
                continue
            except (AttributeError, ModuleNotFoundError):
                return None
        obj = getattr(obj, part)
    return obj


def test_every_row_of_the_readme_math_table_names_code_that_exists():
    rows = math_table()
    assert len(rows) >= 10
    for row in rows:
        code = row.rstrip(" |").rsplit(" | ", 1)[1]
        names = [re.sub(r"\(.*", "", n) for n in re.findall(r"`([^`]+)`", code)]
        functions = [n for n in names if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+", n) and not n.endswith(".py")]
        files = [n for n in names if n.endswith(".py")]
        assert functions, f"the row names no function: {row}"
        for name in functions:
            assert resolve(name) is not None, f"{name} (README math table) does not exist in sr3_edu"
        for f in files:
            assert (PACKAGE / f).is_file(), f"{f} (README math table) is not a file of sr3_edu/"


def test_resolve_finds_real_names_and_refuses_made_up_ones():
    assert resolve("diffusion.q_sample") is not None and resolve("NoiseSchedule.gammas") is not None
    assert resolve("diffusion.no_such_function") is None and resolve("NoSuchClass.x") is None


def library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "commands" not in p.parts and p.name not in ("cli.py",)]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_import_no_argparse(path):
    # the command line is sr3_edu.commands' job; the library takes plain Python values
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(a.name != "argparse" for a in node.names), f"{path.name} imports argparse"
        elif isinstance(node, ast.ImportFrom):
            assert node.module != "argparse", f"{path.name} imports argparse"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_private_name_of_another(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, f"{path.name} imports {private} from {node.module}"


def code_lines(node: ast.FunctionDef) -> int:
    """Lines of a function from the end of its signature, without its docstring."""
    first = node.body[0]
    start = first.lineno
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        start = first.end_lineno + 1
    return node.end_lineno - start + 1


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_fit_on_a_screen(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_FILE_LINES, f"{path.name} has over {MAX_FILE_LINES} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("add_"):
            # add_*arguments are argument tables: one add_argument call per flag
            n = code_lines(node)
            assert n <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name} has {n} code lines"
