"""zg-init: prepare a new destination, so that nothing is ever written where none was meant.

A ``file://`` destination is used only once it holds the marker zg-init writes: a backup to an
external disk that is not mounted fails instead of filling the root filesystem.  A bucket or vault
is created when missing, never changed when it exists.
"""

from .common import parser, run
from .storeargs import open_dest


EXAMPLES = [
    ('zg-init file:///mnt/backup/zfs',
     'mark a directory on a mounted disk as a destination'),
    ('zg-init usb',
     'the same for a destination named in config.toml'),
    ('zg-init offsite',
     "create a configured s3:// destination's bucket (with Object Lock if it asks for it)"),
]


def build_parser():
    p = parser("zg-init", "Prepare DEST for backups: for file:///path, create the directory (its parent must "
                          "exist) and the marker that says it is a zfsglacier destination; for s3://bucket/prefix, "
                          "create the bucket if it does not exist (with Object Lock when the destination's "
                          "object_lock asks for it); for glacier://vault, create the vault. Anything that "
                          "exists is left as it is.", examples=EXAMPLES)
    p.add_argument("dest", metavar="DEST", help="file:///path, s3://bucket/prefix, glacier://vault, or a NAME "
                                                "from config.toml")
    return p


def body(argv):
    args = build_parser().parse_args(argv)
    _, store, _ = open_dest(args)
    print(store.init())
    return 0


def main(argv=None):
    return run("zg-init", body, argv)
