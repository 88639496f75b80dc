"""The README and the documentation site: short front door, generated tables and references.

`make test` builds the site with `mkdocs build --strict`; these checks are the fast part:
that the generated pages cover every command and module, and that the results tables are
written by the run (`reproduce --update-docs/--update-readme`), not by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ephys2tx.cli import app
from ephys2tx.errors import Ephys2txError
from ephys2tx.report import markdown
from ephys2tx.report.results import Figure, ForestRun, Scores, StudyResults

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 10 * 1024


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command_paths(group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every visible leaf command (Typer vendors Click, so groups are recognised by shape)."""
    found = []
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            found += _command_paths(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_readme_is_a_short_front_door_that_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= README_LIMIT
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block] == [["make", "reproduce"], ["make", "test"]]
    assert markdown.README_START in text and markdown.README_END in text


def test_cli_reference_lists_every_command_and_option():
    page = _hooks().cli_markdown()
    commands = _command_paths(typer.main.get_command(app))
    assert len(commands) > 10
    for path in commands:
        assert f"## `ephys2tx {' '.join(path)}`" in page, path
    assert "`--species <str>`" in page and "`--update-docs <path>`" in page


def test_api_reference_has_a_page_for_every_public_module():
    pages = "\n".join(_hooks().api_pages().values())
    package = ROOT / "src" / "ephys2tx"
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if any(p.startswith("_") for p in parts):
            continue
        assert f"::: {'.'.join(parts)}\n" in pages, path


def _scores(protocol: str, mean: float) -> Scores:
    return Scores(
        model="rf",
        species="human",
        label="label",
        protocol=protocol,
        n_cells=702,
        n_folds=5,
        n_repeats=3,
        macro_f1={"mean": mean, "sd": 0.01, "ci95": [mean - 0.01, mean + 0.01], "n": 15},
        accuracy={"mean": 0.9, "sd": 0.01},
        per_class_f1={},
    )


def _results() -> StudyResults:
    runs = [
        ForestRun("human", "label", "raw", "grouped", _scores("grouped", 0.7881), Figure("a", "")),
        ForestRun("human", "label", "raw", "seed", _scores("seed", 0.6543), Figure("b", "")),
    ]
    return StudyResults(ephys2tx_version="9.9.9", forest={r.key: r for r in runs})


def test_reproduce_writes_the_docs_tables_and_the_readme_headline(tmp_path):
    results = _results()
    docs = markdown.write_docs_tables(results, tmp_path / "generated")
    text = docs.read_text()
    assert text.startswith("_full run, ephys2tx 9.9.9_")
    assert "| 0.788 ± 0.010 |" in text and "| 0.654 ± 0.010 |" in text  # every protocol

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{markdown.README_START}\nold table\n{markdown.README_END}\ntail\n")
    markdown.update_readme(readme, results)
    new = readme.read_text()
    assert new.startswith("intro\n") and new.endswith(f"{markdown.README_END}\ntail\n")
    assert "old table" not in new and "0.788 ± 0.010" in new
    assert "0.654" not in new  # the headline keeps the donor-grouped rows only
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "generated", "reproduce.md"]


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no block\n")
    with pytest.raises(ValueError, match="no results block"):
        markdown.update_readme(readme, _results())


def test_update_docs_must_be_a_folder_before_anything_runs(tmp_path):
    target = tmp_path / "file.md"
    target.write_text("x")
    result = CliRunner().invoke(
        app, ["reproduce", "--out", str(tmp_path / "r"), "--update-docs", str(target)]
    )
    assert isinstance(result.exception, Ephys2txError)
    assert "--update-docs" in str(result.exception) and "not a folder" in str(result.exception)
    assert not (tmp_path / "r" / "results.json").exists()


@pytest.mark.slow  # the session's light default model (conftest): about 20 s of CPU once
def test_readme_python_example_runs_as_written(
    use_light_default_models, human_cells, tmp_path, monkeypatch
):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```python\n")
    assert len(blocks) == 2, "the README has one Python example"
    example = blocks[1].split("```", 1)[0]
    # light settings, trained once per session (use_light_default_models sets them)
    human_cells.head(20).to_csv(tmp_path / "cells.csv", index=False)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    table = namespace["table"]
    assert len(table) == 20
    columns = {"predicted", "prediction_set", "t_type", "most_specific", "confident", "novelty"}
    assert columns | {"flags"} <= set(table.columns)
