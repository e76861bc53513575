"""A new administrator's first steps, as real processes: zg-keygen's two files, zg-config's sample
and check, a report whose reader stops early, and the make runbook targets' exit codes."""

import os
import stat
import subprocess
import sys

import pytest

from zfsglacier import errors
from tests.helpers import BIN, REPO, assert_one_line_error, zg

SAMPLE = REPO / "zfsglacier" / "data" / "config.sample.toml"


# --- zg-keygen -----------------------------------------------------------------------------------

def test_keygen_writes_the_secret_and_the_recipient_file(tmp_path):
    key, pub = tmp_path / ".zg" / "offsite.key", tmp_path / ".zg" / "offsite.pub"
    p = zg("keygen", "-o", key, "--public-file", pub)
    assert p.returncode == 0 and p.stdout == b"", p.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) & 0o077 != 0o077  # readable: it is public
    assert pub.read_text() == zg("keygen", "--public", key, check=True).stdout.decode()
    assert zg("encrypt", pub, input=b"x", check=True).stdout  # a recipient file zg-encrypt takes


def test_keygen_refuses_an_existing_recipient_file_before_making_anything(tmp_path):
    key, pub = tmp_path / "new.key", tmp_path / "old.pub"
    pub.write_text("zgpub-kept\n")
    p = zg("keygen", "-o", key, "--public-file", pub)
    assert_one_line_error(p, errors.KeyFileError.exit_code, "already exists")
    assert not key.exists() and pub.read_text() == "zgpub-kept\n"
    p = zg("keygen", "--public-file", tmp_path / "x.pub")  # the secret would go to stdout: refused
    assert_one_line_error(p, errors.UsageError.exit_code, "-o")
    assert p.stdout == b"" and not (tmp_path / "x.pub").exists()


def test_a_secret_key_to_a_closed_pipe_is_an_error_not_silence(tmp_path):
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, str(BIN / "zg-keygen")], stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    assert_one_line_error(p, errors.OutputClosedError.exit_code, "broken pipe")


# --- zg-config -----------------------------------------------------------------------------------

def _aws_config(tmp_path, *profiles):
    path = tmp_path / "aws-config"
    path.write_text("".join(f"[profile {p}]\nregion = eu-west-1\n" for p in profiles))
    return {"AWS_CONFIG_FILE": str(path), "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "HOME": str(tmp_path)}


def test_the_sample_in_readme_is_the_one_zg_config_prints_and_it_checks():
    readme = (REPO / "README.md").read_text()
    printed = zg("config", "sample", check=True).stdout.decode()
    assert printed == SAMPLE.read_text()
    assert f"```toml\n{printed}```\n" in readme
    assert "[destinations." in printed and "default_destination" in printed and "catalog" in printed
    for key in ("endpoint", "profile", "region", "retry_mode", "max_attempts"):  # per destination
        assert f"\n{key} = " in printed, key


def test_config_check_passes_the_sample_and_names_each_destination(tmp_path):
    env = dict(_aws_config(tmp_path, "backup", "ceph"), ZG_CONFIG=str(SAMPLE))
    p = zg("config", "check", env=env)  # the job's key is not there yet: its line says so
    assert p.returncode == 2 and f"FAIL    job nightly: key file {tmp_path}/.zg/offsite.pub does not exist".encode() in p.stdout, p.stdout
    zg("keygen", "-o", tmp_path / ".zg" / "offsite.key", "--public-file", tmp_path / ".zg" / "offsite.pub", check=True)
    p = zg("config", "check", env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    for line in ("ok      usb: file:///mnt/backup/zfs", "ok      offsite: s3://my-backup-bucket/zfs (DEEP_ARCHIVE)",
                 "default usb", "ok      job nightly: tank/db to usb, snapshot 'auto', daily"):
        assert line in out, out


def test_config_check_fails_one_line_per_destination_that_cannot_be_used(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[destinations.good]\nurl = "file:///srv/zg"\n'
                   '[destinations.noprofile]\nurl = "s3://b/p"\nprofile = "nosuch"\n'
                   '[destinations.badclass]\nurl = "s3://b/p"\nstorage_class = "ICEBERG"\n'
                   '[destinations.nosigner]\nurl = "s3://b/p"\nsigner = "~/missing.signer"\n')
    p = zg("config", "check", cfg, env=_aws_config(tmp_path))
    assert p.returncode == errors.UsageError.exit_code
    out = p.stdout.decode()
    assert "ok      good: file:///srv/zg" in out
    assert "FAIL    noprofile: profile 'nosuch' is not in the AWS configuration" in out
    assert "FAIL    badclass: storage class 'ICEBERG'" in out
    assert "FAIL    nosigner: " in out and str(tmp_path / "missing.signer") in out  # ~ is the user's home
    assert_one_line_error(p, 2, "3 of 4 destination(s) and job(s) cannot be used")


@pytest.mark.parametrize("text, words", [
    ('[destinations.x]\nurl = "s3://b/p"\njobs = "4"\n', ("jobs must be an integer", "'4'")),
    ('[destinations.x]\nurl = "s3://b/p"\nread_timeout = true\n', ("read_timeout must be a number",)),
    ('[destinations.x]\nurl = "s3://b/p"\nstorage_clas = "GLACIER"\n', ("unknown key(s) storage_clas",)),
    ('default_destinaton = "x"\n', ("unknown key(s) default_destinaton",)),
    ('[destinations.x]\nurl = "s3://b/p"\n[destinations.x.oops\n', ("config",)),
])
def test_a_config_mistake_is_one_line_for_every_command(tmp_path, text, words):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    assert_one_line_error(zg("config", "check", cfg), 2, str(cfg), *words)
    assert_one_line_error(zg("ls", "x", env={"ZG_CONFIG": str(cfg)}), 2, str(cfg), *words)


def test_config_sample_o_makes_the_directory_and_never_overwrites(tmp_path):
    target = tmp_path / "cfg" / "zfsglacier" / "config.toml"
    zg("config", "sample", "-o", target, check=True)
    assert target.read_text() == SAMPLE.read_text()
    target.write_text("# mine\n")
    assert_one_line_error(zg("config", "sample", "-o", target), 2, "already exists")
    assert target.read_text() == "# mine\n"
    assert_one_line_error(zg("config", "check", tmp_path / "none.toml"), 2, "no such file", "zg-config sample")
    assert zg("config", "path", env={"ZG_CONFIG": str(target)}, check=True).stdout.decode() == f"{target}\n"


# --- a reader that stops early -------------------------------------------------------------------

def _closed_reader(*argv, env=None):
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first line: as `| head` after its lines
    e = dict(os.environ, **(env or {}))
    try:
        return subprocess.run([sys.executable, *map(str, argv)], stdout=w, stderr=subprocess.PIPE, env=e,
                              input=b"")
    finally:
        os.close(w)


def test_a_report_to_a_reader_that_stopped_ends_quietly_as_unix_tools_do(tmp_path):
    p = _closed_reader(BIN / "zg-config", "sample")
    assert (p.returncode, p.stderr) == (141, b"")
    p = _closed_reader(BIN / "zg-doctor", "--help")  # argparse's own output too
    assert p.returncode in (0, 141) and b"Traceback" not in p.stderr


def test_a_filter_to_a_reader_that_stopped_is_still_exit_8(tmp_path):
    pub = tmp_path / "k.pub"
    zg("keygen", "-o", tmp_path / "k.key", "--public-file", pub, check=True)
    p = _closed_reader(BIN / "zg-encrypt", pub)
    assert_one_line_error(p, errors.OutputClosedError.exit_code, "broken pipe")


# --- make's runbook targets ----------------------------------------------------------------------

def _make(*args, env=None):
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_make_restore_passes_the_dry_run_and_no_wait_flags():
    common = ("restore", "SNAP=p/ds@s", "TARGET=p/new", "DEST=file:///nowhere")
    assert "--dry-run --no-wait" in _make("-n", *common, "DRY_RUN=1", "NO_WAIT=1").stdout
    plain = _make("-n", *common, "DRY_RUN=0").stdout
    assert "--dry-run" not in plain and "--no-wait" not in plain
    assert "--dry-run" in _make("-n", "backup", "DATASET=p/ds", "DRY_RUN=1").stdout
    assert "--no-wait" in _make("-n", "verify", "NO_WAIT=1").stdout


def test_make_names_the_tools_exit_code(tmp_path):
    """make itself can only exit 2 on a failure; its last line says what the tool exited with."""
    p = _make("restore", "SNAP=p/ds@s", "TARGET=p/new", f"DEST=file://{tmp_path}", f"KEY={tmp_path}/none.key",
              env={"ZG_CATALOG": str(tmp_path / "none.db"), "ZG_CONFIG": str(tmp_path / "none.toml")})
    assert p.returncode == 2
    code = errors.CatalogError.exit_code  # no catalog there
    assert f"make restore: zg-restore exited {code}: " in p.stderr, p.stderr


# --- zg-init on a bucket or a vault ------------------------------------------------------------

@pytest.mark.parametrize("server", ["moto", "rgw"])
def test_zg_init_creates_a_missing_bucket_and_leaves_an_existing_one(request, aws, tmp_path, server):
    import boto3
    env = dict(aws.env, ZG_CATALOG=str(tmp_path / "c.db"), ZG_CONFIG=str(tmp_path / "config.toml"))
    if server == "rgw":
        env["AWS_ENDPOINT_URL_S3"] = request.getfixturevalue("rgw").url
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
    bucket = f"zg-init-{os.getpid()}-{len(server)}"
    p = zg("init", f"s3://{bucket}/zfs", env=env)
    assert p.returncode == 0, p.stderr
    assert f"bucket {bucket} created" in p.stdout.decode()
    s3.head_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="mine", Body=b"x")
    p = zg("init", f"s3://{bucket}/zfs", env=env)
    assert p.returncode == 0 and b"exists: nothing changed" in p.stdout
    assert s3.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"x"
    # a destination that asks for Object Lock gets a bucket that has it (only possible at creation)
    (tmp_path / "config.toml").write_text(f'[destinations.locked]\nurl = "s3://{bucket}-lock/zfs"\n'
                                          f'object_lock = "governance"\nlock_days = 1\n')
    p = zg("init", "locked", env=env)
    assert p.returncode == 0 and b"with Object Lock enabled" in p.stdout, p.stderr
    conf = s3.get_object_lock_configuration(Bucket=f"{bucket}-lock")["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"


def test_zg_init_creates_a_vault_once(aws, tmp_path):
    import boto3
    env = dict(aws.env, ZG_CATALOG=str(tmp_path / "c.db"), ZG_CONFIG=str(tmp_path / "none.toml"))
    glacier = boto3.client("glacier", endpoint_url=aws.vault_url)
    name = f"zg-init-{os.getpid()}"
    p = zg("init", f"glacier://{name}", env=env)
    assert p.returncode == 0 and f"vault {name} created".encode() in p.stdout, p.stderr
    assert glacier.describe_vault(vaultName=name)["VaultName"] == name
    p = zg("init", f"glacier://{name}", env=env)
    assert p.returncode == 0 and b"exists: nothing changed" in p.stdout
