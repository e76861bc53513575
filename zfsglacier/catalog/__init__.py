"""Layer 3, local state: the SQLite catalog (db), which archives restore which snapshot (chains),
and one run at a time per dataset and destination (locks)."""
