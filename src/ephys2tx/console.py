"""The console every layer prints through.

`console` (stderr) carries messages, warnings, status spinners and progress bars, so that
stdout holds only what a command outputs as data; `stdout` is for a command whose result is
a rich table meant for the terminal or a pipe (`inspect`). Both resolve sys.stdout/stderr at
print time, so test runners that swap the streams capture them. Messages are never wrapped
(`soft_wrap`): a file path split across lines in a log cannot be copied back; a terminal
wraps long lines by itself.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
stdout = Console()
