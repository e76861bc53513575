"""zg-init: prepare a new destination, so that nothing is ever written where none was meant.

A ``file://`` destination is used only once it holds the marker zg-init writes: a backup to an
external disk that is not mounted fails instead of filling the root filesystem.
"""

from .common import parser, run
from .storeargs import open_dest


def body(argv):
    p = parser("zg-init", "Prepare DEST for backups: for file:///path, create the directory (its parent must "
                          "exist) and the marker that says it is a zfsglacier destination.")
    p.add_argument("dest", metavar="DEST", help="file:///path, or a NAME from config.toml")
    args = p.parse_args(argv)
    _, store, _ = open_dest(args)
    print(store.init())
    return 0


def main(argv=None):
    return run("zg-init", body, argv)
