"""IAM policies for an ``s3://`` destination, one per role (``zg-doctor --policy ROLE``).

Each role is what its commands call, no more, scoped to the destination's bucket and prefix:

- ``backup`` (zg-backup, zg-upload, their resume): writes new objects, lists, aborts its own
  unfinished uploads, sets and reads Object Lock retention (where object_lock is set: extending
  a chain's locks; PutObjectRetention cannot shorten a governance lock without
  s3:BypassGovernanceRetention, and nothing shortens a compliance one).  It never reads an
  archive and never deletes: a host that is taken over cannot remove its off-site copies.  Its
  uploads are verified without s3:GetObject (S3Store._listed: ListObjectVersions for size and
  ETag, GetObjectRetention for the lock).  Catalog copies are objects like archives (one
  PutObject per run); the backup role cannot delete the older ones, so they stay until
  zg-prune, under the prune role, removes all but the newest.  The role carries an explicit
  Deny of reads and deletes: servers that keep ACLs (Ceph RGW; AWS buckets with ACLs enabled)
  make the writer the owner of what it wrote, and an owner may read and delete it whatever
  the policy allows.
- ``restore`` (zg-restore, zg-fetch, zg-verify, zg-catalog rebuild, zg-ls): reads
  objects and their recorded versions, their part listings and retention, asks for thaws.
- ``prune`` (zg-prune, zg-rm): lists, deletes objects and versions, reads retention (never the
  bytes), aborts unfinished uploads.  No s3:BypassGovernanceRetention: locks hold against it.
- ``admin``: all of the above and what zg-doctor reads of the bucket (versioning, Object Lock,
  lifecycle), and s3:BypassGovernanceRetention (zg-rm --bypass-governance).

Overwrites: on AWS the backup role may write an object only with ``If-None-Match: *`` (condition
key s3:if-none-match; s3:ObjectCreationOperation false exempts CreateMultipartUpload and
UploadPart, which take no such header), which every zfsglacier upload sends: S3 itself refuses
to write over an existing key (written from AWS's documentation of conditional writes; not run
against AWS here).  S3-compatible servers do not know those condition keys (Ceph RGW 16.2 treats
them as absent, and the condition would refuse every write), so for a destination with an
``endpoint`` the statement is left out: there, on a versioned bucket, what is written over a
key is a new version, and reads name the version recorded at upload (ArchiveInfo.version).
Likewise s3:GetObjectAttributes: RGW 16.2 has no such call and refuses a policy naming the action
(PutUserPolicy fails, code "Unknown"); without it a read takes its part layout from HEAD
?partNumber or the recorded plan, as on a server that lacks the call (s3.py).
"""

from __future__ import annotations

from ..errors import UsageError

ROLES = ("backup", "restore", "prune", "admin")

# What each role may do: (bucket actions, object actions).  The bucket's listing actions are
# scoped to the prefix by the s3:prefix condition.
_LIST = ["s3:ListBucket", "s3:ListBucketVersions"]
_UPLOADS = ["s3:ListBucketMultipartUploads"]
_WRITE = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]  # and s3:PutObject (see _put)
_LOCK = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
_READ = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:RestoreObject"]
_ATTRIBUTES = ["s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"]  # AWS's part listing (see module doc)
_DELETE = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObjectRetention", "s3:AbortMultipartUpload",
           "s3:ListMultipartUploadParts"]
_BUCKET_READS = ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration", "s3:GetLifecycleConfiguration"]
_NEVER_BY_BACKUP = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion",
                    "s3:BypassGovernanceRetention"]


def _unique(actions):
    return sorted(set(actions))


def policy(role: str, bucket: str, prefix: str, *, object_lock: bool, aws: bool) -> dict:
    """The IAM policy document of ``role`` for ``s3://bucket/prefix`` (see module doc); ``aws``:
    the destination is AWS itself (no endpoint), whose conditional-write keys the backup role uses."""
    if role not in ROLES:
        raise UsageError(f"--policy {role!r}: use one of {', '.join(ROLES)}")
    prefix = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
    bucket_arn = f"arn:aws:s3:::{bucket}"
    scoped = {"Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}} if prefix else {}
    statements = []

    def allow(sid, actions, resource, **extra):
        statements.append({"Sid": sid, "Effect": "Allow", "Action": _unique(actions), "Resource": resource, **extra})

    if role == "admin":  # zg-doctor asks HeadBucket, which has no prefix to scope by
        allow("List", _LIST, bucket_arn)
    else:
        allow("ListPrefix", _LIST, bucket_arn, **scoped)
    if role in ("backup", "prune", "admin"):
        allow("Uploads", _UPLOADS, bucket_arn)
    if role == "admin":
        allow("BucketSettings", _BUCKET_READS, bucket_arn)
    elif role == "backup" and object_lock:
        allow("LockSetting", ["s3:GetBucketObjectLockConfiguration"], bucket_arn)
    if role in ("backup", "admin"):
        _put(allow, objects, aws and role == "backup")
        allow("Write", _WRITE + (_LOCK if object_lock or role == "admin" else []), objects)
    if role in ("restore", "admin"):
        allow("Read", _READ + (_ATTRIBUTES if aws else []), objects)
    if role in ("prune", "admin"):
        allow("Delete", _DELETE + (["s3:BypassGovernanceRetention"] if role == "admin" else []), objects)
    if role == "backup":
        statements.append({"Sid": "BackupNeverReadsOrDeletes", "Effect": "Deny", "Action": _NEVER_BY_BACKUP,
                           "Resource": objects})
    return {"Version": "2012-10-17", "Statement": statements}


def _put(allow, objects: str, conditional: bool) -> None:
    if not conditional:
        allow("Put", ["s3:PutObject"], objects)
        return
    allow("PutNewObjectsOnly", ["s3:PutObject"], objects, Condition={"Null": {"s3:if-none-match": "false"}})
    allow("PutMultipartSteps", ["s3:PutObject"], objects, Condition={"Bool": {"s3:ObjectCreationOperation": "false"}})
