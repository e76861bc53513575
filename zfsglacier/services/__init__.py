"""Layer 4, services: what the commands do, as functions of stores, ZFS, the catalog and keys
passed in; no argparse, no printing, no environment.  backup, restore, thaw, rebuild (and the
catalog check), retention, cost."""
