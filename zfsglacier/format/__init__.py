"""Layer 1, the archive format (formats/SPEC.md): the public header, footer and signature block
(header), key files, slots and signatures (keys), the chunked AES-256-GCM body (stream), the codec
registry (compression), metadata schemas (metadata), ZFS send streams (zfsstream), the 2013 format
(legacy), and encrypt/decrypt composed from them (archive).  Imports plumbing and errors only."""
