"""The shape of the code: the runtime never imports the training package, and no module of the
runtime imports itself back through others."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'fer3d_ros'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, id(node) in top_level))
    return found


def runtime_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob('*.py')}


def test_nothing_in_the_runtime_imports_the_training_package():
    offenders = [f'{name} imports {imported}' for name, path in runtime_modules().items()
                 for imported, _ in imports(path) if imported == 'training' or imported.startswith('training.')]
    assert not offenders, offenders


def test_the_runtime_has_no_import_cycles():
    """Not even through an import inside a function (backends <-> tensorrt, bag <-> fleet were such)."""
    modules = runtime_modules()
    graph = {name: {imported for imported, _ in imports(path) if imported in modules and imported != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for child in sorted(graph[name]):
            if state.get(child) == 1:
                return path + [name, child]
            if child not in state and (cycle := visit(child, path + [name])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, ' -> '.join(cycle)


def test_parameters_are_declared_only_from_settings_dataclasses():
    """Each default, range and description is written once, in a settings dataclass."""
    offenders = [f'{path.name}:{number}' for path in (PACKAGE / 'nodes').glob('*.py') if path.name != 'parameters.py'
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if 'declare(' in line or 'declare_parameter(' in line]
    assert not offenders, offenders


def test_the_parameter_reference_is_written_from_the_settings():
    from fer3d_ros.tools.reference import reference
    committed = (PACKAGE.parent / 'docs' / 'parameters.md').read_text()
    assert committed == reference(), \
        'docs/parameters.md is stale: python -m fer3d_ros.tools.reference > docs/parameters.md'
