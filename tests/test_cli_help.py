"""Every ``asab`` command's help has a working example; exit codes and --json are documented."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import click
import pytest
import typer
from conftest import HIU_2023, ROOT
from typer.testing import CliRunner

from asab.cli.app import EXIT_CODES
from asab.cli.main import app

runner = CliRunner()
#: commands whose example is cheap enough to run here (others: only checked to exist).
RUN_EXAMPLES = ("check-config", "route", "formulate", "limits", "run", "draw", "import-legacy",
                "plan", "bench status", "bench refill", "bench empty", "bench set-line",
                "results", "export")
#: commands whose example reads the run folder that the example of ``asab run`` makes.
AFTER_RUN = ("results", "export")
#: commands a script would drive: they must offer --json.
JSON_COMMANDS = RUN_EXAMPLES


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    """Every leaf command, by its full name (``"bench status"`` for sub-commands; typer ≥ 0.29
    brings its own click, whose groups are no ``click.Group``: a group is what has commands)."""
    found: dict[str, click.Command] = {}
    for name, cmd in sorted(group.commands.items()):
        if isinstance(getattr(cmd, "commands", None), dict):
            found.update(_commands(cmd, prefix + (name,)))
        else:
            found[" ".join(prefix + (name,))] = cmd
    return found


COMMANDS = _commands(typer.main.get_command(app))


_EXAMPLE = re.compile(r"^\s*Example:\s*((?:[A-Z_]+=\S+\s+)*)asab\s+(.+)$", re.MULTILINE)


def _example_line(cmd: click.Command) -> str:
    """The ``Example:`` line of the command's help, e.g. ``Example: X=1 asab serve``."""
    match = _EXAMPLE.search(cmd.help or "")
    assert match, f"no 'Example: [VAR=value ...] asab ...' line in the help of {cmd.name}"
    return match.group(0).strip()


def _example(cmd: click.Command) -> list[str]:
    """The arguments of the command's example (after ``asab``, before any ``>``, ``|``, ``&``)."""
    args = shlex.split(_EXAMPLE.search(cmd.help or "").group(2))
    cut = [i for i, a in enumerate(args) if a in (">", ">>", "|", "&", "&&", ";")]
    return args[: cut[0]] if cut else args


def test_known_commands_exist():
    assert set(RUN_EXAMPLES) <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_shows_an_example(name):
    args = _example(COMMANDS[name])
    assert args[: len(name.split())] == name.split()  # the example runs this very command
    res = runner.invoke(app, [*name.split(), "--help"])
    assert res.exit_code == 0
    shown = " ".join(res.output.split())  # rich wraps long lines at the terminal width
    assert " ".join(_example_line(COMMANDS[name]).split()) in shown


@pytest.mark.parametrize("name", JSON_COMMANDS)
def test_script_commands_offer_json(name):
    assert any("--json" in p.opts for p in COMMANDS[name].params)


@pytest.fixture
def example_cwd(tmp_path, monkeypatch):
    """A working folder where relative example paths resolve, and a one-request demo bench."""
    (tmp_path / "hardware_configs").symlink_to(ROOT / "hardware_configs", target_is_directory=True)
    bench = tmp_path / "bench"
    shutil.copytree(HIU_2023, bench)
    requests = json.loads((bench / "demo_requests.json").read_text(encoding="utf-8"))
    (bench / "demo_requests.json").write_text(json.dumps(requests[:1]), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASAB_CONFIG", str(bench))
    monkeypatch.delenv("ASAB_STATE", raising=False)  # the default: runs/state/<bench> here
    return tmp_path


@pytest.mark.parametrize("name", RUN_EXAMPLES)
def test_example_works(name, example_cwd):
    args = _example(COMMANDS[name])
    if name in AFTER_RUN:
        made = runner.invoke(app, _example(COMMANDS["run"]))
        assert made.exit_code == 0, made.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0, f"asab {shlex.join(args)} → exit {res.exit_code}:\n{res.output}"
    if "--out" in args:  # draw writes its picture, run its run folder
        assert (example_cwd / args[args.index("--out") + 1]).exists()


def test_exit_codes_in_main_help():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text


def test_exit_codes_in_app_docstring_and_readme():
    import asab.cli.app as app_module

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Command line", 1)[1]
    section = section.split("\n## ", 1)[0]
    table = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, re.MULTILINE))
    assert sorted(int(k) for k in table) == sorted(EXIT_CODES)
    for code in EXIT_CODES:
        assert re.search(rf"^\* {code} — ", app_module.__doc__, re.MULTILINE)
    assert "asab draw" in section


def test_usage_error_is_exit_2():
    assert runner.invoke(app, ["route"]).exit_code == 2
    assert runner.invoke(app, ["limits", "--no-such-option"]).exit_code == 2
