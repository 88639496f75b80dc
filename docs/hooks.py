"""mkdocs hooks: the reference pages are generated from the code at every build.

- The CLI reference (`reference/cli.md`) gets every command's help from the Typer app, so a
  new or renamed command or option can never be missing from it.
- The API reference gets one page per package of `src/ephys2tx`, each listing every public
  module for mkdocstrings, and the nav gets those pages: a new module shows up by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ephys2tx"
CLI_MARK = "<!-- cli-reference -->"
API_INDEX = "reference/api/index.md"
TOP = "ephys2tx"  # the page of the top-level modules


# --- CLI ---------------------------------------------------------------------------------
def _commands(group, path: tuple[str, ...]):
    """(path, command) of every command under a Click group, depth first, in CLI order."""
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        here = (*path, name)
        if hasattr(command, "commands"):
            yield from _commands(command, here)
        else:
            yield here, command


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _usage(path: tuple[str, ...], command, ctx) -> str:
    pieces = ["ephys2tx", *path, "[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        name = param.name.upper()
        name = f"{name}..." if param.nargs == -1 else name
        pieces.append(name if param.required else f"[{name}]")
    return " ".join(pieces)


def _params_table(command, ctx) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        opts, help_text = record
        rows.append(f"| `{_cell(opts)}` | {_cell(help_text)} |")
    if not rows:
        return []
    return ["| argument or option | what it does |", "|---|---|", *rows, ""]


def cli_markdown() -> str:
    """Every `ephys2tx` command: what it does, its usage line and its options."""
    import typer

    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from ephys2tx.cli import app

    root = typer.main.get_command(app)
    root_ctx = root.context_class(root, info_name="ephys2tx")  # Typer vendors Click
    lines = [
        "```text",
        "ephys2tx [--debug] COMMAND [OPTIONS] [ARGUMENTS]...",
        "```",
        "",
        *_params_table(root, root_ctx),
    ]
    for path, command in _commands(root, ()):
        ctx = command.context_class(command, info_name=path[-1], parent=root_ctx)
        lines += [f"## `ephys2tx {' '.join(path)}`", "", (command.help or "").strip(), ""]
        lines += ["```text", _usage(path, command, ctx), "```", ""]
        lines += _params_table(command, ctx)
    return "\n".join(lines)


# --- API ---------------------------------------------------------------------------------
def _modules(folder: Path, dotted: str) -> list[str]:
    """Public modules directly in a package folder, by dotted name, sorted."""
    return [
        f"{dotted}.{p.stem}"
        for p in sorted(folder.glob("*.py"))
        if not p.stem.startswith("_") and p.stem != "__main__"
    ]


def api_pages() -> dict[str, str]:
    """Page path -> Markdown: one page per package, every public module in it."""
    packages = sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    pages = {f"reference/api/{TOP}.md": _page(TOP, [TOP, *_modules(PACKAGE, TOP)])}
    for folder in packages:
        dotted = f"{TOP}.{folder.name}"
        pages[f"reference/api/{folder.name}.md"] = _page(
            dotted, [dotted, *_modules(folder, dotted)]
        )
    return pages


def _page(title: str, modules: list[str]) -> str:
    blocks = [f"# `{title}`", ""]
    for module in modules:
        blocks += [f"::: {module}", ""]
    return "\n".join(blocks)


def _api_nav() -> list:
    names = [p.removeprefix("reference/api/").removesuffix(".md") for p in api_pages()]
    return [API_INDEX, *[{name: f"reference/api/{name}.md"} for name in names]]


def _replace_nav(items: list) -> bool:
    """Put the generated API pages where the nav names the API index page."""
    for i, item in enumerate(items):
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if value == API_INDEX:
                items[i] = {title: _api_nav()}
                return True
            if isinstance(value, list) and _replace_nav(value):
                return True
    return False


# --- mkdocs events -----------------------------------------------------------------------
def on_config(config, **kwargs):
    if config.nav and not _replace_nav(config.nav):
        raise ValueError(f"mkdocs.yml: the nav must name {API_INDEX}")
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, content in api_pages().items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if CLI_MARK in markdown:
        return markdown.replace(CLI_MARK, cli_markdown())
    return markdown
