"""Help that teaches: every command's --help ends with examples that its own parser accepts, every
argument has help, and docs/ is what the parsers say (regenerated and compared)."""

import argparse
import importlib
import os
import shlex
import subprocess
import sys
import tomllib

import pytest

from helpers import REPO, zg

with open(REPO / "pyproject.toml", "rb") as f:
    COMMANDS = {prog: target.split(":")[0] for prog, target in tomllib.load(f)["project"]["scripts"].items()}


def build(prog):
    return importlib.import_module(COMMANDS[prog]).build_parser()


def _segments(line):
    """The argument lists of every zg- command in a shell line (pipes, redirections, &&)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    segment, out, skip_next = [], [], False
    for token in lex:
        if skip_next:
            skip_next = False
            continue
        if token in ("|", "&&", ";", "||"):
            out.append(segment)
            segment = []
        elif token in (">", "<", ">>", "2>"):
            skip_next = True  # the file name
        else:
            segment.append(token)
    out.append(segment)
    return [s for s in out if s and s[0] in COMMANDS]


def _actions(p):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield p, action


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_every_example_parses_with_the_commands_own_parser(prog):
    p = build(prog)
    assert 2 <= len(p.examples) <= 3, f"{prog}: two or three examples"
    for cmd, why in p.examples:
        assert why, cmd
        segments = _segments(cmd)
        assert any(s[0] == prog for s in segments), f"{prog}'s example does not run {prog}: {cmd}"
        for argv in segments:
            try:
                build(argv[0]).parse_args(argv[1:])
            except Exception as err:  # UsageError: what the user would see
                pytest.fail(f"{prog}: example {cmd!r} is refused by {argv[0]}: {err}")


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_every_argument_has_help(prog):
    for p, action in _actions(build(prog)):
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help and action.help.strip(), f"{p.prog}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("prog", ["zg-verify", "zg-keygen", "zg-doctor"])
def test_help_output_ends_with_the_examples(prog):
    out = zg(prog[3:], "--help", check=True).stdout.decode()
    assert "\nexamples:\n" in out
    for cmd, _ in build(prog).examples:
        assert f"\n  {cmd}\n" in out


def test_keygen_help_says_where_the_secret_goes_without_o():
    out = zg("keygen", "--help", check=True).stdout.decode()
    assert "SECRET KEY ITSELF goes to stdout" in " ".join(out.split())


def test_docs_match_the_parsers():
    """What CI checks: docs/zg-*.md regenerated from the parsers is what is checked in."""
    p = subprocess.run([sys.executable, str(REPO / "docs" / "make_reference.py"), "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import make_reference
    finally:
        sys.path.pop(0)
    assert {f"{prog}.md" for prog in COMMANDS} | {"json.md"} == set(make_reference.pages())
    for prog in COMMANDS:  # every option --help names is in the page
        text = (REPO / "docs" / f"{prog}.md").read_text()
        for _, action in _actions(build(prog)):
            for option in action.option_strings:
                assert f"`{option}" in text or f", {option}" in text, (prog, option)


def test_a_stale_page_is_named(tmp_path):
    """The check can fail: a page edited by hand is reported, with the way to fix it."""
    import shutil
    docs = tmp_path / "repo" / "docs"
    shutil.copytree(REPO / "docs", docs)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / "repo" / name)
    os.symlink(REPO / "zfsglacier", tmp_path / "repo" / "zfsglacier")
    page = docs / "zg-ls.md"
    page.write_text(page.read_text().replace("## EXAMPLES", "## EXAMPLES (edited)"))
    p = subprocess.run([sys.executable, str(docs / "make_reference.py"), "--check"], capture_output=True, text=True)
    assert p.returncode == 1 and "zg-ls.md" in p.stderr and "make docs" in p.stderr
