"""Layering: the programs -> data_prep -> the library, and serving apart.

`linrec_jax/cli/` (the programs) may import `data_prep` (raw files to
prepared arrays), which imports the library; the rest of `linrec_jax/`
imports neither `data_prep` nor `experiments`, its modules import each other
without a circle, and serving a trained model does not load the training
loop.
"""

import ast
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
TRAINING = (
    "linrec_jax.training.train",
    "linrec_jax.training.steps",
    "linrec_jax.training.sharding",
    "linrec_jax.training.optimizer",
)


def _imported(path: pathlib.Path) -> set[str]:
  """Top-level packages of every import statement (lazy ones too)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module.split(".")[0])
  return names


def test_library_imports_neither_data_prep_nor_experiments():
  library = [
      p
      for p in (REPO / "linrec_jax").rglob("*.py")
      if "cli" not in p.relative_to(REPO / "linrec_jax").parts
  ]
  assert len(library) > 30
  wrong = {
      str(p.relative_to(REPO)): sorted(
          _imported(p) & {"data_prep", "experiments"}
      )
      for p in library
  }
  assert not {path: names for path, names in wrong.items() if names}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_graph() -> dict[str, set[str]]:
  """Module -> the `linrec_jax` modules it imports (lazy imports too)."""
  paths = {_module_name(p): p for p in (REPO / "linrec_jax").rglob("*.py")}
  graph = {}
  for name, path in paths.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        # `from a import b`: the module a.b if there is one, else a.
        targets = [
            f"{node.module}.{alias.name}"
            if f"{node.module}.{alias.name}" in paths
            else node.module
            for alias in node.names
        ]
      else:
        continue
      edges.update(t for t in targets if t in paths and t != name)
    graph[name] = edges
  return graph


def test_library_modules_import_each_other_without_a_circle():
  graph = _library_graph()
  assert len(graph) > 40
  done, on_path = set(), []

  def visit(name):
    if name in on_path:
      raise AssertionError(
          "import circle: "
          + " -> ".join(on_path[on_path.index(name) :] + [name])
      )
    if name in done:
      return
    on_path.append(name)
    for imported in sorted(graph[name]):
      visit(imported)
    on_path.pop()
    done.add(name)

  for name in sorted(graph):
    visit(name)


def test_data_prep_imports_no_program():
  for path in (REPO / "data_prep").rglob("*.py"):
    source = path.read_text()
    assert "linrec_jax.cli" not in source and "experiments" not in (
        _imported(path)
    ), path


def test_serving_imports_no_training_module():
  code = (
      "import sys; import linrec_jax.serving.restore, linrec_jax.cli.recommend; "
      f"print(sorted(m for m in {TRAINING!r} if m in sys.modules))"
  )
  process = subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      check=True,
      timeout=300,
      cwd=REPO,
  )
  assert process.stdout.strip() == "[]", process.stdout
