"""The README is a promise: every `rmbuild` command line it shows names a real command, real
options of that command, and files that exist in the repository. A renamed flag or a moved
example fails here instead of on a newcomer's first try."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from rmbuild.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _command_lines() -> list[str]:
    """Every line of a ```bash block that runs rmbuild, without its trailing comment."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for raw in block.splitlines():
            line = raw.split(" #", 1)[0].strip()
            # A line may chain two commands with ';' (push ... ; pull ...).
            for part in line.split(" ; "):
                if part.startswith("rmbuild "):
                    lines.append(part)
    return lines


def _options(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


LINES = _command_lines()


def test_the_readme_shows_commands() -> None:
    assert len(LINES) > 20, "the README lost its command examples"


@pytest.mark.parametrize("line", LINES)
def test_readme_command_line_matches_the_cli(line: str) -> None:
    # Placeholders like <id> and alternatives like <id|alias|--all> are not literal arguments.
    words = shlex.split(re.sub(r"<[^>]*>", "X", line).replace("[", " ").replace("]", " "))
    assert words[0] == "rmbuild"
    global_opts = _options(cli)
    rest = [w for w in words[1:] if w not in global_opts]
    name = rest[0]
    assert name in COMMANDS, f"README runs `rmbuild {name}`, which is not a command"
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    args = rest[1:]
    if isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"README runs `rmbuild {name} {args[0]}`, not a subcommand"
        command, args = sub, args[1:]
    known = _options(command) | global_opts | {"--help", "-h"}
    for word in args:
        if word.startswith("-") and len(word) > 1:
            flag = word.split("=", 1)[0]
            assert flag in known, f"`{line}`: {flag} is not an option of `rmbuild {name}`"
        elif word.endswith((".yaml", ".yml")) and "/" in word:
            assert (ROOT / word).is_file(), f"`{line}`: {word} does not exist in the repository"
