"""The README's functional-API example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks, "README.md has no python example"
  exec(compile(blocks[0], str(README), "exec"), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  assert "(2, 50, 8, 16) (1, 5, 128)" in printed
