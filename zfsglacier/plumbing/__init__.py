"""Layer 0, plumbing: bytes moved and hashed, nothing about archives.  The only threads
(concurrency), peekable input and pipe buffers (pipes), read-ahead and write-behind between stages
(pipeline), the plaintext digest (digest), ZFS's fletcher-4 (fletcher, _fletcher.c), the vault's
tree hash (treehash), part plans and ordered parallel part transfers with retries (parts)."""
