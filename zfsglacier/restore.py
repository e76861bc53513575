"""zg-restore's work: the chain to a snapshot, thawed all at once, then fetched, decrypted and
received in order.  Resumable without any state of its own: a snapshot already on the target
with the right guid is a step already done."""

import base64
import io
import time

from . import archive, chains, cost
from .errors import IntegrityError, NoMatchingKeyError, NotFoundError, RestorePendingError, ZfsError, ZgError
from .format import read_header
from .keys import open_header


def find_snapshot(cat, dest, spec):
    """The catalog row for DATASET@SNAP (or DATASET@guid:N, or an archive id)."""
    rows = cat.archives(dest)
    if "@" not in spec:
        row = next((r for r in rows if r.id == spec), None)
        if row is None:
            raise NotFoundError(f"{spec}: expected DATASET@SNAPSHOT (or an archive id)")
        return rows, row
    dataset, snap = spec.split("@", 1)
    if snap.startswith("guid:"):
        match = [r for r in rows if str(r.toguid) == snap[5:]]
    else:
        match = [r for r in rows if r.dataset == dataset and r.snapshot == snap]
    if not match:
        known = sorted({r.snapshot for r in rows if r.dataset == dataset and r.snapshot})
        hint = f" (known: {', '.join(known[-5:])})" if known else \
            " (the catalog knows no snapshot of it: `zg-catalog rebuild DEST --key KEY` if it was lost)"
        raise NotFoundError(f"no archive of {spec} at {dest}{hint}")
    return rows, max(match, key=lambda r: r.uploaded)


def check_keys(chain, identities):
    """Try the keys on the header copies in the catalog before paying for any thaw."""
    for a in chain.archives:
        copy = a.public.get("zg-header")
        if not copy:
            continue
        header = read_header(io.BytesIO(base64.b64decode(copy)))
        try:
            open_header(header, identities)
        except NoMatchingKeyError:
            raise NoMatchingKeyError(f"the key given does not open {a.id} ({a.name}): wrong key") from None


def describe(chain, dest, storage_class):
    lines = []
    for a in chain.archives:
        lines.append(f"  {a.id}  {'incr' if a.fromguid else 'full'}  {cost.human_bytes(a.size):>10}  {a.name}")
    cls = cost.class_of(dest, storage_class)
    lines.append(f"  {len(chain.archives)} archives, {cost.human_bytes(chain.size)} to retrieve from {cls}:")
    for r in cost.retrieval_options(chain.size, cls, objects=len(chain.archives)):
        wait = "at once" if r.hours == 0 else f"~{r.hours:g} h"
        lines.append(f"    {r.tier:10} {wait:>8}  {cost.dollars(r.dollars)}  ({cost.as_of()})")
    return "\n".join(lines)


def done_steps(zfs, target, chain):
    """How many leading archives of the chain are already received into ``target`` (by guid)."""
    if not zfs.exists(target):
        return 0, False
    on_target = {s.guid for s in zfs.snapshots(target)}
    n = 0
    for a in chain.archives:
        if a.toguid in on_target:
            n += 1
        else:
            break
    return n, True


def thaw_all(store, dest, cat, archives, tier, days, wait, say, poll):
    """Ask for every thaw at once (they run in parallel at the provider), then wait for all."""
    pending = []
    for a in archives:
        st = store.thaw_status(a.id)
        if st.state == "frozen":
            st = store.request_thaw(a.id, tier=tier, days=days)
            cat.thaw_requested(dest, a.id, tier, days, st.state, st.detail)
        if st.state not in ("ready", "thawed"):
            pending.append(a)
    if pending and not wait:
        raise RestorePendingError(f"{len(pending)} of {len(archives)} archives are being thawed ({tier} tier): "
                                  f"run the same command again later")
    start, delay = time.monotonic(), poll
    while pending:
        say(f"waiting for {len(pending)} thaws ({tier} tier), {int(time.monotonic() - start)} s so far")
        time.sleep(delay)
        delay = min(delay * 1.5, 900)
        still = []
        for a in pending:
            st = store.thaw_status(a.id)
            if st.state == "frozen":
                st = store.request_thaw(a.id, tier=tier, days=days)
            if st.state not in ("ready", "thawed"):
                still.append(a)
        pending = still


def check_before_receive(reader, a, identities):
    """Before zfs receive touches the target, the header must name the snapshot the catalog expects:
    a valid archive of the same key swapped under another id would otherwise be received.  A
    compound (`zfs send -I`) stream's header names no guid (its outer record has toguid 0): the
    guid check after receiving covers it.  Returns the opened header for decrypt."""
    header, file_key = archive.open_archive(reader, identities)
    got = header.snapshot.toguid if header.snapshot is not None else None
    if got != a.toguid and not (header.snapshot is not None and header.snapshot.compound):
        raise IntegrityError(f"archive {a.id} holds snapshot guid {got}, the catalog expects {a.toguid} "
                             f"({a.name}): not receiving it")
    return header, file_key


def receive_chain(zfs, store, chain, start, target, identities, *, force, jobs, say):
    """Fetch, decrypt and receive archives[start:] into target; check each snapshot's guid."""
    for i, a in enumerate(chain.archives[start:], start):
        say(f"receiving {i + 1}/{len(chain.archives)}: {a.name} ({cost.human_bytes(a.size)})")
        with store.open_read(a.id, jobs=jobs) as reader:
            opened = check_before_receive(reader, a, identities)
            recv = zfs.receive(target, force=force or i > 0, mount=False)
            try:
                archive.decrypt(reader, recv.stdin, identities, opened=opened)
            except BrokenPipeError:
                recv.check()  # zfs receive quit early: its own message says why
                raise
            except BaseException:
                recv.kill()
                raise
        recv.check()
        got = {s.guid for s in zfs.snapshots(target)}
        if a.toguid not in got:
            raise ZfsError(f"after receiving {a.id}, {target} has no snapshot with guid {a.toguid}")


def restore(zfs, store, cat, dest, spec, target, identities, *, tier="Standard", days=7, wait=True, force=False,
            jobs=4, say=lambda s: None, poll=60.0):
    rows, row = find_snapshot(cat, dest, spec)
    chain = chains.chain_to(rows, row.toguid, spec)
    done, exists = done_steps(zfs, target, chain)
    if exists and done == 0 and not force:
        raise ZfsError(f"{target} already exists; refusing to receive into it (use --force to overwrite it)")
    if done == len(chain.archives):
        return chain, done
    check_keys(chain, identities)
    thaw_all(store, dest, cat, chain.archives[done:], tier, days, wait, say, poll)
    receive_chain(zfs, store, chain, done, target, identities, force=force and done == 0, jobs=jobs, say=say)
    for a in chain.archives:
        cat.thaw_done(dest, a.id)
    try:
        zfs.mount(target)
    except ZgError:
        pass
    return chain, done
