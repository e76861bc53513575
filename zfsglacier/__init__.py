"""zfsglacier: encrypted, verified ZFS snapshot archives in cold storage."""

__version__ = "0.1.0"
