"""The README's layout table is the first map a newcomer reads: every module listed, and only modules that exist."""
import re

from conftest import REPO


def test_layout_lists_every_module_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    listed = set(re.findall(r"`((?:wlm|ui)/\w+\.py)`", layout))
    present = {f"{p.parent.name}/{p.name}" for folder in ("wlm", "ui") for p in (REPO / folder).glob("*.py")}
    assert present - {"ui/__init__.py"} <= listed, sorted(present - listed)
    assert listed <= present, sorted(listed - present)
