"""zg-restore's work: the chain to a snapshot, thawed all at once, then fetched, decrypted and
received in order.  Resumable without any state of its own: a snapshot already on the target
with the right guid is a step already done.

It never destroys what it did not make (check_continue): an incremental receive rolls the target
back to its newest snapshot, so an existing target is continued only from the very chain step it
holds, with nothing changed there since, and `zfs receive -F` is used only under --force."""

import hashlib
import io

from ..format import archive
from ..catalog import chains
from . import cost, thaw
from ..errors import (IntegrityError, NoMatchingKeyError, NotFoundError, SignerError, TargetExistsError, ZfsError,
                      ZgError)
from ..stores import vouches
from ..format.header import read_header
from ..format.metadata import Identity
from ..format.zfsstream import STREAM_FEATURES
from ..format.keys import check_signature, open_header
from .watch import NOBODY, Counted


def names(spec):
    """``row -> bool``: is a catalog row the archive that DATASET@SNAP (or DATASET@guid:N, or an
    archive id) names?"""
    if "@" not in spec:
        return lambda r: r.id == spec
    dataset, snap = spec.split("@", 1)
    if snap.startswith("guid:"):
        return lambda r: str(r.toguid) == snap[5:]
    return lambda r: r.dataset == dataset and r.snapshot == snap


def find_snapshot(cat, dest, spec):
    """The catalog row for DATASET@SNAP (or DATASET@guid:N, or an archive id)."""
    rows = cat.archives(dest)
    named = names(spec)
    if "@" not in spec:
        row = next((r for r in rows if named(r)), None)
        if row is None:
            raise NotFoundError(f"{spec}: expected DATASET@SNAPSHOT (or an archive id)")
        return rows, row
    dataset, snap = spec.split("@", 1)
    match = [r for r in rows if named(r)]
    trees = [r for r in rows if r.snapshot == snap and r.dataset and dataset.startswith(r.dataset + "/")
             and "-R" in r.meta.send_flags]
    if not match and trees:  # a dataset inside a replicated tree: the tree is one stream
        top = max(trees, key=lambda r: len(r.dataset)).dataset
        raise NotFoundError(f"{dataset} is inside the replicated tree of {top} (zfs send -R: one stream for the "
                            f"tree): restore {top}@{snap} to a new TARGET, and find it at TARGET{dataset[len(top):]}")
    if not match:
        known = sorted({r.snapshot for r in rows if r.dataset == dataset and r.snapshot})
        hint = f" (known: {', '.join(known[-5:])})" if known else \
            " (the catalog knows no snapshot of it: `zg-catalog rebuild DEST --key KEY` if it was lost)"
        raise NotFoundError(f"no archive of {spec} at {dest}{hint}")
    return rows, max(match, key=lambda r: r.uploaded)


def check_keys(chain, identities, signers=()):
    """Try the keys (and the required signers) on the header copies in the catalog before paying
    for any thaw."""
    for a in chain.archives:
        copy = a.meta.header
        if not copy:
            continue
        header = read_header(io.BytesIO(copy))
        try:
            check_signature(header, signers)
            open_header(header, identities)
        except NoMatchingKeyError:
            raise NoMatchingKeyError(f"the key given does not open {a.id} ({a.name}): wrong key") from None


def describe(chain, class_of):
    """The chain to retrieve, and what each retrieval tier costs from the price class each archive
    is stored in (``class_of(archive)``)."""
    lines = []
    for a in chain.archives:
        lines.append(f"  {a.id}  {'incr' if a.fromguid else 'full'}  {cost.human_bytes(a.size):>10}  {a.name}")
    groups = cost.by_class(chain.archives, class_of)
    lines.append(f"  {len(chain.archives)} archives, {cost.human_bytes(chain.size)} to retrieve:")
    for cls, (size, n) in sorted(groups.items()):
        lines.append(f"   from {cls} ({n} archive{'s' if n > 1 else ''}, {cost.human_bytes(size)}):")
        for r in cost.retrieval_options(size, cls, objects=n):
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


def check_continue(zfs, target, chain, done):
    """Continuing a restore into an existing target must not destroy what the user made there.
    An incremental receive rolls the target back to its newest snapshot (and `-F` destroys later
    snapshots), so without --force it continues only when the target's newest snapshot is the
    chain step it stopped at and nothing changed since.  Otherwise: refuse, naming the loss."""
    snaps = zfs.snapshots(target)
    if done == 0:
        raise TargetExistsError(f"{target} already exists and holds no snapshot of this chain; refusing to "
                                f"receive into it (restore into a new dataset, or --force to overwrite it)")
    step = chain.archives[done - 1]
    newest = snaps[-1]
    if newest.guid != step.toguid:
        raise TargetExistsError(f"{target} has snapshot {newest.short}, newer than {step.name} where this chain "
                                f"continues: receiving would destroy it; restore into a new dataset, or --force "
                                f"to discard it")
    changed = zfs.changes_since(target, newest)
    if changed:
        raise TargetExistsError(f"{target} has local changes: {changed}; receiving would roll them back. Keep "
                                f"them with `zfs snapshot` and restore into a new dataset, or --force to discard "
                                f"them")


def check_before_receive(reader, a, identities, signers=()):
    """Before zfs receive touches the target, the archive must be the one the plan expects, by
    authenticated bytes only: its header must be the header copy recorded for it (when there is
    one: the payload key is bound to the header, so this pins the whole archive), and the
    identity its MAC-checked header carries (guids, from the public block or, for a compound
    `zfs send -I` stream, the private metadata) must be the catalog's.  A valid archive of the
    same key swapped under another id, relabelled, or replayed is refused here.  Returns the
    opened header for decrypt."""
    try:
        header, file_key = archive.open_archive(reader, identities, signers)
    except SignerError as err:
        raise SignerError(f"archive {a.id} ({a.name}): {err}; not receiving it") from None
    copy = a.meta.header
    if copy and copy != header.raw:
        raise IntegrityError(f"archive {a.id} ({a.name}) is not the archive recorded under that id (its header "
                             f"differs from the recorded copy): swapped or replaced in the store; not receiving it")
    ident = Identity.of_header(header, archive.read_private_metadata(header, file_key))
    got = None if ident is None else (ident.toguid, ident.fromguid)
    if ident is not None and ident.toguid is None:
        return header, file_key  # compound stream of zfsglacier < 0.3: the guid check after receiving covers it
    if got != (a.toguid, a.fromguid or 0):
        raise IntegrityError(f"archive {a.id} holds snapshot guid {got and got[0]} (from {got and got[1]}), the "
                             f"catalog expects {a.toguid} (from {a.fromguid or 0}) for {a.name}: not receiving it")
    return header, file_key


class _Hashing:
    """A reader that hashes what passes through it and, at its end, compares the SHA-256 recorded
    at upload (``want``).  The archive reader holds back its last chunk until it has seen the end
    of input, so a mismatch raised here stops the last plaintext bytes from reaching zfs receive."""

    def __init__(self, reader, want, archive_id):
        self._reader, self._want, self._id = reader, want, archive_id
        self._digest = hashlib.sha256() if want else None

    def read(self, n=-1):
        data = self._reader.read(n)
        if self._digest is not None:
            if data:
                self._digest.update(data)
            elif self._digest.hexdigest() != self._want:
                raise IntegrityError(f"archive {self._id}: SHA-256 of the bytes read differs from the one recorded "
                                     f"at upload: it was replaced in the store")
            else:
                self._digest = None  # checked
        return data


def check_features(zfs, chain, start, target):
    """The target's pool must have every pool feature the streams still to receive need (a raw
    stream needs ``encryption``, a -L one with large blocks ``large_blocks``, ...; zfsstream.
    STREAM_FEATURES).  zfs receive would refuse too, with "stream has unsupported feature,
    feature flags = 1000000": this says which, and before anything is thawed or received."""
    pool = target.split("/", 1)[0]
    features = zfs.pool_features(pool)
    enabled = {k for k, v in (features or {}).items() if v in ("enabled", "active")}
    version = zfs.pool_version(pool) if features is None else None
    for a in chain.archives[start:]:
        names = set(a.meta.feature_set) | ({"raw"} if a.meta.raw else set())
        needed = {n: f for b, (n, f) in STREAM_FEATURES.items() if n in names and f}
        lacking = []
        for name, feature in sorted(needed.items()):
            if feature.startswith("spa_version>="):
                if features is None and version is not None and version < int(feature.split(">=")[1]):
                    lacking.append(f"{name} (needs pool version {feature.split('>=')[1]}, {pool} is {version})")
            elif feature not in enabled:
                lacking.append(f"{name} (pool feature {feature})")
        if lacking:
            kind = f"version {version}" if features is None and version else "feature flags"
            raise ZfsError(f"{a.name} ({a.id}) is a stream with {', '.join(lacking)}, which pool {pool} ({kind}) "
                           f"cannot receive: restore into a pool that has them (OpenZFS: `zpool set "
                           f"feature@NAME=enabled {pool}`)")


def locked_after(zfs, chain, target):
    """A line for the user when a raw chain was restored: the dataset stays encrypted and locked
    until its ZFS key (the source's, which zfsglacier never had) is loaded.  None otherwise."""
    if not any(a.meta.raw for a in chain.archives):
        return None
    enc = zfs.encryption(target) or {}
    if enc.get("keystatus") == "available":
        return None
    root = enc.get("encryptionroot") or target
    return (f"{target} was received raw (zfs send -w) and stays encrypted and locked: unlock it with its source's "
            f"ZFS key, `zfs load-key {root}` (keylocation {enc.get('keylocation', 'prompt')}; add -L file:///PATH "
            f"for a key file), then `zfs mount {target}`")


def check_chain(store, chain, start, identities, signers=()):
    """Every archive still to receive is the one the plan expects (check_before_receive), read
    before the first `zfs receive`: a bad link late in the chain must not leave a half-restored
    target behind.  Reads each archive's start only (one range)."""
    for a in chain.archives[start:]:
        with store.open_read(a.id, jobs=1, recorded=a) as reader:
            check_before_receive(reader, a, identities, signers)


def receive_chain(zfs, store, chain, start, target, identities, *, force, jobs, watch=NOBODY, signers=()):
    """Fetch, decrypt and receive archives[start:] into target; check each snapshot's guid."""
    watch.begin("restore", sum(a.size or 0 for a in chain.archives[start:]))
    for i, a in enumerate(chain.archives[start:], start):
        watch.say(f"receiving {i + 1}/{len(chain.archives)}: {a.name}")
        with store.open_read(a.id, jobs=jobs, recorded=a) as reader:
            vouched = vouches(reader, a.checksum, a.sha256)
            src = _Hashing(Counted(reader, watch), None if vouched else a.sha256, a.id)
            opened = check_before_receive(src, a, identities, signers)  # again: the store may have changed it
            tree = archive.read_private_metadata(*opened).get("replicated") or {}
            exclude = ("mountpoint",) if carries_props(a) else ()
            recv = zfs.receive(target, force=force, mount=False, compound=a.stream == "compound", exclude=exclude)
            try:
                archive.decrypt(src, recv.stdin, identities, opened=opened)
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
        check_tree(zfs, a, target, tree)


def carries_props(a):
    """A -p or -R stream carries the source's properties, its mountpoint too: taken, the restore
    would mount over the original (or over what is there now)."""
    return bool({"-p", "-R"} & set(a.meta.send_flags))


def check_tree(zfs, a, target, tree):
    """Every dataset a replication archive holds (its authenticated ``replicated`` list: relative
    name -> guid) came back under ``target`` with that snapshot: zfs receive of a -R stream
    that lost a child would otherwise look complete."""
    for rel, guid in sorted(tree.items()):
        name = f"{target}/{rel}" if rel else target
        try:
            have = {s.guid for s in zfs.snapshots(name)}
        except ZgError:
            have = set()
        if int(guid) not in have:
            raise ZfsError(f"after receiving {a.id}, {name} has no snapshot with guid {guid}: the replicated tree "
                           f"did not come back whole")


def restore(zfs, store, cat, dest, spec, target, identities, *, policy=None, force=False, jobs=4,
            watch=NOBODY, signers=()):
    rows, row = find_snapshot(cat, dest, spec)
    chain = chains.chain_to(rows, row.toguid, spec)
    done, exists = done_steps(zfs, target, chain)
    if done == len(chain.archives):
        return chain, done
    if exists and not force:
        check_continue(zfs, target, chain, done)
    check_keys(chain, identities, signers)
    check_features(zfs, chain, done, target)
    if any(carries_props(a) for a in chain.archives[done:]) and not zfs.can_exclude_props():
        raise ZfsError(f"{spec} was sent with its properties (zfs send -p/-R), and this zfs cannot receive them without "
                       f"the source's mountpoint (no `zfs receive -x`, OpenZFS 0.7+; zfs-fuse has none): restore it "
                       f"where OpenZFS runs, or the restore would mount over the original")
    thaw.thaw_all(store, dest, cat, [a.id for a in chain.archives[done:]], policy or thaw.Policy(), watch.say)
    check_chain(store, chain, done, identities, signers)
    receive_chain(zfs, store, chain, done, target, identities, force=force and exists, jobs=jobs, watch=watch,
                  signers=signers)
    for a in chain.archives:
        cat.thaw_done(dest, a.id)
    tree = zfs.list_datasets(target) if any("-R" in a.meta.send_flags for a in chain.archives) else [target]
    for name in tree:  # received unmounted (-u): the tree is whole now
        try:
            zfs.mount(name)
        except ZgError:
            pass
    return chain, done
