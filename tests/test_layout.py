"""The package layout stays what ``docs/contributing.rst`` says it is.

Three rules, read off the source files (nothing is imported):

* **Size.** Every module under ``sklaplace/`` is at most ``MAX_LINES`` lines, docstrings
  included, except those in ``EXCEPTIONS`` (a public class whose documentation needs more,
  with the reason). An exception that is no longer over the limit fails, so the list cannot
  outlive its reason. ``SPLIT_PENDING`` lists the modules over the limit when this test was
  written whose split is under way (issue 22, item 4); they are strict xfails, so each one
  fails as soon as its split lands, and its entry is then deleted.
* **Module map.** The ``.. code-block:: text`` under "The modules" in
  ``docs/contributing.rst`` names every ``.py`` file of the package, and nothing else. Its
  convention: one entry per line, ``name  description`` (two or more spaces between), each
  level of packages indented by three more spaces than its parent; a description may go on
  over more lines, each starting in the column where the description started. A file is
  named by its file name (``base.py``); a package by its folder name with a slash
  (``approximations/``), which stands for its ``__init__.py`` (an ``__init__.py`` is never
  named itself); the first entry is ``sklaplace/``, the package itself, and every other
  entry sits under it.
* **Import direction.** The plumbing in ``sklaplace/_runtime/`` does not know the stages:
  none of its modules imports ``sklaplace._estimators``, ``sklaplace.fitting``,
  ``sklaplace.tuning``, ``sklaplace.prediction`` or ``sklaplace.approximations``. And only
  ``sklaplace/__init__.py`` imports ``sklaplace._estimators`` (apart from the modules of
  ``_estimators/`` themselves). Every ``import`` statement counts, inside functions too;
  relative imports are resolved, and ``from .. import prediction`` imports
  ``sklaplace.prediction``.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sklaplace"
MAX_LINES = 400

# path (relative to the repository) -> why the module may be longer than MAX_LINES
EXCEPTIONS: dict[str, str] = {}

# path -> reason: over MAX_LINES on main when this test was written, split in progress
SPLIT_PENDING = {}

STAGES = (
    "sklaplace._estimators",
    "sklaplace.fitting",
    "sklaplace.tuning",
    "sklaplace.prediction",
    "sklaplace.approximations",
)


def source_files():
    return sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))


def n_lines(path):
    return len((ROOT / path).read_text().splitlines())


# ---------------------------------------------------------------------------- size


def size_params():
    params = []
    for path in source_files():
        marks = ()
        if path in SPLIT_PENDING:
            marks = pytest.mark.xfail(strict=True, reason=SPLIT_PENDING[path])
        params.append(pytest.param(path, marks=marks, id=path))
    return params


@pytest.mark.parametrize("path", size_params())
def test_module_size(path):
    n = n_lines(path)
    if path in EXCEPTIONS:
        assert n > MAX_LINES, (
            f"{path} has {n} lines, within the limit of {MAX_LINES}: delete its entry from "
            "EXCEPTIONS in tests/test_layout.py"
        )
    else:
        assert n <= MAX_LINES, (
            f"{path} has {n} lines, more than {MAX_LINES}: split what is not its main "
            "object into a module of its package (and name it in the module map of "
            "docs/contributing.rst), or, if one public class's documentation needs the room, "
            "add it to EXCEPTIONS with the reason"
        )


def test_listed_modules_exist():
    missing = sorted((set(EXCEPTIONS) | set(SPLIT_PENDING)) - set(source_files()))
    assert not missing, f"listed in tests/test_layout.py but not in the package: {missing}"


# ---------------------------------------------------------------------------- module map

ENTRY = re.compile(r"(?P<name>[A-Za-z_]\w*(?:\.py|/))(?: {2,}(?P<description>\S.*))?$")


def module_map_lines(text):
    """The lines of the first ``code-block:: text`` of the section "The modules"."""
    section = re.search(r"^The modules\n-+\n(.*?)(?=^\S[^\n]*\n[-=]{3,}\n|\Z)", text, re.M | re.S)
    assert section, 'docs/contributing.rst has no section "The modules"'
    block = re.search(r"^\.\. code-block:: text\n\n((?:(?: {3,}.*)?\n)+)", section.group(1), re.M)
    assert block, 'the section "The modules" has no ".. code-block:: text"'
    return [line for line in block.group(1).splitlines() if line.strip()]


def parse_module_map(lines):
    """The paths a module map names (see the module docstring for its convention)."""
    named, stack, base, description_column = [], [], None, None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent == description_column:
            continue  # a description going on
        if base is None:
            base = indent
        depth, rest = divmod(indent - base, 3)
        entry = ENTRY.match(line.strip())
        assert entry and rest == 0 and depth >= 0, f"not an entry of the module map: {line!r}"
        assert entry["description"], f"an entry without a description: {line!r}"
        name = entry["name"]
        if depth == 0:
            assert not named and name == "sklaplace/", (
                f"the first entry must be sklaplace/ and every other one under it: {line!r}"
            )
        assert depth <= len(stack), f"indented deeper than a package's contents: {line!r}"
        stack = stack[:depth]
        if name.endswith("/"):
            stack.append(name[:-1])
            named.append("/".join(stack) + "/__init__.py")
        else:
            named.append("/".join([*stack, name]))
        description_column = indent + entry.start("description")
    return named


def test_module_map_parser():
    lines = [
        "   sklaplace/        the package",
        "      sub/           a package, whose description",
        "                     goes on",
        "         a.py        a file in it",
        "      b.py           a file at the top",
    ]
    assert parse_module_map(lines) == [
        "sklaplace/__init__.py",
        "sklaplace/sub/__init__.py",
        "sklaplace/sub/a.py",
        "sklaplace/b.py",
    ]
    with pytest.raises(AssertionError, match="deeper"):
        parse_module_map([lines[0], "         a.py        too deep"])
    with pytest.raises(AssertionError, match="without a description"):
        parse_module_map([lines[0], "      b.py"])
    with pytest.raises(AssertionError, match="first entry"):
        parse_module_map(["   b.py        a file outside the package"])
    with pytest.raises(AssertionError, match="not an entry"):
        parse_module_map([lines[0], "       b.py       misaligned"])


def test_module_map_names_every_module():
    text = (ROOT / "docs" / "contributing.rst").read_text()
    named = parse_module_map(module_map_lines(text))
    duplicates = sorted({path for path in named if named.count(path) > 1})
    assert not duplicates, f"named twice in the module map: {duplicates}"
    files = set(source_files())
    assert not set(named) - files, (
        f"the module map of docs/contributing.rst names modules that do not exist: "
        f"{sorted(set(named) - files)}"
    )
    assert not files - set(named), (
        f"modules missing from the module map of docs/contributing.rst: "
        f"{sorted(files - set(named))}"
    )


# ---------------------------------------------------------------------------- imports


def imported_modules(path, root=ROOT):
    """Every module the file at ``path`` imports, as absolute dotted names; for ``from m
    import a, b`` both ``m`` and ``m.a``, ``m.b`` (``a`` may be a submodule)."""
    parts = Path(path).with_suffix("").parts
    package = parts[:-1]  # the package of a module, or the package itself for __init__.py
    found = set()
    for node in ast.walk(ast.parse((root / path).read_text(), filename=path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                module = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def within(module, prefix):
    return module == prefix or module.startswith(prefix + ".")


def test_imported_modules_resolves_relative_imports(tmp_path):
    (tmp_path / "sklaplace" / "_runtime").mkdir(parents=True)
    (tmp_path / "sklaplace" / "_runtime" / "x.py").write_text(
        "from .. import prediction\nfrom .cache import a\n"
        "def f():\n    import sklaplace.tuning.resolve as r\n    from ..fitting import state\n"
    )
    found = imported_modules("sklaplace/_runtime/x.py", tmp_path)
    assert {"sklaplace.prediction", "sklaplace._runtime.cache", "sklaplace.tuning.resolve"} <= (
        found
    )
    assert "sklaplace.fitting.state" in found
    (tmp_path / "sklaplace" / "__init__.py").write_text("from ._estimators import A\n")
    assert "sklaplace._estimators" in imported_modules("sklaplace/__init__.py", tmp_path)


@pytest.mark.parametrize(
    "path", [p for p in source_files() if p.startswith("sklaplace/_runtime/")]
)
def test_runtime_does_not_import_the_stages(path):
    bad = sorted(m for m in imported_modules(path) if any(within(m, s) for s in STAGES))
    assert not bad, (
        f"{path} imports {bad}: the plumbing in _runtime/ must not know the stages; pass "
        "what it needs in as an argument, or move the code to the stage"
    )


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in source_files()
        if p != "sklaplace/__init__.py" and not p.startswith("sklaplace/_estimators/")
    ],
)
def test_only_the_package_imports_the_estimators(path):
    bad = sorted(m for m in imported_modules(path) if within(m, "sklaplace._estimators"))
    assert not bad, (
        f"{path} imports {bad}: only sklaplace/__init__.py imports the estimators; move what "
        "it needs out of _estimators/"
    )
