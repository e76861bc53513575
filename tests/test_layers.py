"""The layers of zfsglacier, one package each, and the rule that imports only go down (read from
the source with ast).

    5 cli        parse arguments, call the services, present results (cli/)
    4 services   backup, restore, rebuild, retention, thaw, cost: no argparse, no printing (services/)
    3 state      the catalog, its chains, locks (catalog/)
    2 access     stores (S3, vaults, directories), ZFS, and the configuration that names destinations
                 (stores/, zfs.py, config.py)
    1 format     the archive: header, keys, body, codecs, metadata, the 2013 format, ZFS streams (format/)
    0 base       errors, and the plumbing: threads, byte pipes, digests, checksums, parts (plumbing/)

A module may import from its own layer and the ones below.  A command module (cli/<command>.py)
imports the cli helpers but never another command.  README's layout table follows these layers
and names every module of the layer packages.
"""

import ast
import re

from tests.helpers import REPO

PACKAGE = REPO / "zfsglacier"
LAYERS = {
    0: {"errors", "plumbing", "zfsglacier"},
    1: {"format"},
    2: {"stores", "zfs", "config"},
    3: {"catalog"},
    4: {"services"},
    5: {"cli"},
}
DETAILED = {"plumbing", "format", "catalog", "services"}  # README's table names each of their modules
CLI_HELPERS = {"common", "keyargs", "storeargs", "progress", "sizes", "schema", "jobs", "__init__"}


def layer_of(module):
    """module: dotted, relative to the package ('stores.s3', 'cli.ls', 'zfsglacier' for the package)."""
    top = module.split(".")[0]
    for n, names in LAYERS.items():
        if top in names:
            return n
    raise AssertionError(f"zfsglacier.{module} is in no layer: add it to LAYERS (and README's layout table)")


def imports(path):
    """The zfsglacier modules that ``path`` imports, dotted and relative to the package."""
    return imports_of(path.read_text(), path.relative_to(PACKAGE).with_suffix("").parts)


def imports_of(source, here):
    """The zfsglacier modules that ``source``, the module at ``here`` (its path parts in the
    package), imports."""
    package = list(here[:-1])
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            out |= {".".join(base + [a.name]) for a in node.names}  # a name, or a submodule: see _module
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zfsglacier"):
            base = node.module.split(".")[1:]
            out |= {".".join(base + [a.name]) for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.partition(".")[2] or "zfsglacier" for a in node.names if a.name.startswith("zfsglacier")}
    return {_module(m) for m in out}


def _module(dotted):
    """`from .. import __version__` names an attribute, not a module: the module is its parent."""
    parts = [] if dotted == "zfsglacier" else dotted.split(".")
    while parts and not (PACKAGE.joinpath(*parts).with_suffix(".py").exists() or PACKAGE.joinpath(*parts).is_dir()
                         or PACKAGE.joinpath(*parts[:-1], parts[-1] + ".c").exists()):
        parts.pop()
    return ".".join(parts) or "zfsglacier"


def modules():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "build" not in p.parts]


def name_of(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "zfsglacier"


def test_every_module_has_a_layer():
    for path in modules():
        layer_of(name_of(path))


def test_imports_only_go_down():
    bad = []
    for path in modules():
        me = name_of(path)
        for dep in imports(path):
            if layer_of(dep) > layer_of(me):
                bad.append(f"{me} (layer {layer_of(me)}) imports {dep} (layer {layer_of(dep)})")
    assert not bad, "\n".join(bad)


def test_no_command_imports_another():
    bad = []
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.stem in CLI_HELPERS:
            continue
        for dep in imports(path):
            if dep.startswith("cli.") and dep.split(".")[1] not in CLI_HELPERS:
                bad.append(f"cli.{path.stem} imports {dep}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_upward_and_sideways_imports():
    """So that the tests above can fail: a store importing a command, a service importing the cli."""
    assert imports_of("from ..cli import ls\nfrom .base import Store\n", ("stores", "s3")) == {"cli.ls", "stores.base"}
    assert imports_of("from ..cli.fetch import thaw\nfrom .. import __version__\n", ("services", "restore")) == \
        {"cli.fetch", "zfsglacier"}
    assert imports_of("import zfsglacier.catalog.db\n", ("cli", "ls")) == {"catalog.db"}
    assert layer_of("cli.ls") > layer_of("services.backup") > layer_of("catalog.db") > layer_of("stores.s3") > \
        layer_of("format.header") > layer_of("plumbing.parts")


def test_readme_layout_names_every_module():
    text = (REPO / "README.md").read_text()
    table = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(?:zfsglacier/)?(?:[a-z]+/)?([a-z_]+)\.(?:py|c)`", table)) | \
        set(re.findall(r"`zfsglacier/([a-z]+)/`", table))
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for d in PACKAGE.iterdir():
        if d.is_dir() and (d / "__init__.py").exists():
            present.add(d.name)
            if d.name in DETAILED:
                present |= {p.stem for p in d.glob("*.py") if p.stem != "__init__"} | {p.stem for p in d.glob("*.c")}
    assert present - named == set(), f"README's layout table does not name {sorted(present - named)}"
    assert set(LAYERS[0] | LAYERS[1] | LAYERS[2] | LAYERS[3] | LAYERS[4] | LAYERS[5]) - {"zfsglacier"} == \
        {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | \
        {d.name for d in PACKAGE.iterdir() if (d / "__init__.py").exists()}, "LAYERS and the tree differ"
