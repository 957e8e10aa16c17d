"""The README's layout table is the first map a newcomer reads: every module listed, and only modules that exist."""
import ast
import re

from conftest import REPO


def _only_a_docstring(path) -> bool:
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
               for node in ast.parse(path.read_text()).body)


def test_layout_lists_every_module_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    listed = set(re.findall(r"`((?:wlm|ui)(?:/\w+)*/\w+\.py)`", layout))
    # A folder's own line (`wlm/lessons/`) speaks for every file in it.
    folders = set(re.findall(r"`((?:wlm|ui)(?:/\w+)+/)`", layout))
    missing = sorted(folder for folder in folders if not (REPO / folder).is_dir())
    assert not missing, missing
    # Subpackages included; a file that cannot be imported by name (a lesson's numbered script) is not a module.
    present = {p.relative_to(REPO).as_posix(): p for folder in ("wlm", "ui") for p in (REPO / folder).rglob("*.py")
               if p.stem.isidentifier()}
    # A package whose __init__ holds only a docstring is described by the lines of its modules.
    required = {name for name, p in present.items() if not (p.name == "__init__.py" and _only_a_docstring(p))
                and not name.startswith(tuple(folders))}
    assert required <= listed, sorted(required - listed)
    assert listed <= set(present), sorted(listed - set(present))
