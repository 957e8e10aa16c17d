"""The shape a newcomer relies on: the core computes and imports no UI library, one module of the app holds every
cache, and no first-party module imports another that (through any chain) imports it back."""
import ast
import re
from pathlib import Path

from conftest import REPO

FIRST_PARTY = ("wlm", "ui")


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every first-party module and the app's script."""
    found = {"streamlit_app": REPO / "streamlit_app.py"}
    for package in FIRST_PARTY:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every first-party module ``name`` imports, wherever the import is written (top level, inside a function,
    under TYPE_CHECKING): each counts."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)  # `from ui import backend`
    return {t for t in targets if t in known and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_first_party_import_circle():
    graph = _graph()
    assert graph["ui.setup"] >= {"ui.backend", "ui.requests"}  # the graph sees relative imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_imports_no_ui_library():
    for path in sorted((REPO / "wlm").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] not in ("streamlit", "altair"), f"{path.relative_to(REPO)} imports {name}"


def test_every_cache_is_in_the_backend():
    cached = re.compile(r"st\.cache_(?:data|resource)\b")
    holders = {str(p.relative_to(REPO)) for p in [REPO / "streamlit_app.py", *(REPO / "ui").rglob("*.py")]
               if cached.search(p.read_text(encoding="utf-8"))}
    assert holders == {"ui/backend.py"}


def test_the_backend_draws_nothing():
    source = (REPO / "ui" / "backend.py").read_text(encoding="utf-8")
    drawing = re.findall(r"\bst\.(?!cache_data|cache_resource)\w+", source)
    assert drawing == [], drawing
    assert "session_state" not in source


def test_the_readmes_cached_measurement_recipe_works(trained_tiny):
    """The recipe's function, added to the backend as written, measures and is cached by identity."""
    from ui import backend
    from ui.requests import CorpusSource, ModelSource
    from wlm.evaluate import evaluate
    from wlm.model import LoadedModel
    from wlm.quantize import PRESETS

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    recipe = readme[readme.index("### Recipe: a cached measurement"):]
    code = recipe[recipe.index("```python") + len("```python"):recipe.index("```", recipe.index("```python") + 9)]
    namespace = dict(vars(backend))
    exec(compile(code, "README recipe", "exec"), namespace)
    loss_of, calls = namespace["loss_of"], []
    namespace["evaluate"] = lambda *a, **k: (calls.append(1), evaluate(*a, **k))[1]

    model, corpus = trained_tiny
    source = ModelSource("path", "/models/tiny.pth", LoadedModel(model, "tiny"))
    variant = backend.quantized_variant(source, PRESETS["tutorial"])
    split = CorpusSource("/corpora/tiny", corpus)
    loss = loss_of(variant, split, 60)
    assert loss == evaluate(variant.quantized, corpus.test, max_tokens=60).loss and calls == [1]
    # The same identities are the same request, whatever objects carry them: answered from the cache.
    again = backend.quantized_variant(ModelSource("path", "/models/tiny.pth", LoadedModel(model, "tiny")),
                                      PRESETS["tutorial"])
    assert again is variant and loss_of(again, CorpusSource("/corpora/tiny", corpus), 60) == loss and calls == [1]
    assert loss_of(variant, split, 40) != loss and calls == [1, 1]  # another token count is another request
