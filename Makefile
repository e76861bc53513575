# zfsglacier: every target a user or CI needs.  `make help` lists them.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .make/installed
DEB_PACKAGES := zfs-fuse pbzip2 openssl zstd bzip2 rclone
# A real S3 server for the tests, which start it themselves (tests/servers/ceph_rgw.py)
CEPH_PACKAGES := radosgw ceph-mon ceph-osd

.PHONY: help install check test test-openzfs openzfs-image openzfs-deps bench demo clean vectors backup restore verify docs

# Runbook variables for backup/restore/verify (override on the command line or in the environment)
DEST ?= offsite
KEY ?= $(HOME)/.zg/offsite.key
PUB ?= $(HOME)/.zg/offsite.pub
DATASET ?=
SNAP ?=
TARGET ?=
TIER ?= Standard
BIN := $(CURDIR)/bin

help:
	@echo "make install   system packages (zfs-fuse, pbzip2, ...) and the Python package, editable"
	@echo "make demo      a real ZFS dataset backed up to file:// and restored, verified file by file"
	@echo "make check     what CI runs: make test, then make test-openzfs (the guest image is built meanwhile)"
	@echo "make test      the test suite on zfs-fuse, moto, Ceph RGW and the vault stand-in (~15 min)"
	@echo "make test-openzfs   the ZFS tests in a QEMU guest with OpenZFS 2.3 (builds the guest image if none is cached)"
	@echo "make bench     the benchmark suite: speed and memory against the 2013 recipe and native tools"
	@echo "make backup DATASET=tank/db [DEST=offsite PUB=~/.zg/offsite.pub]         back a dataset up (recursively)"
	@echo "make restore SNAP=tank/db@2026-03-03 TARGET=tank/db-restored [DEST= KEY= TIER=]"
	@echo "make verify [DEST=offsite KEY=...]   fetch every archive of DEST and check it end to end"
	@echo "    DRY_RUN=1 (backup, restore): the plan only;  NO_WAIT=1 (restore, verify): request thaws, exit 75"
	@echo "    make exits 2 on any failure: its last line names the tool's own exit code (75: run again later)"
	@echo "make docs      rewrite docs/zg-*.md (the command reference) from the parsers"

install: $(STAMP)

$(STAMP): pyproject.toml setup.py zfsglacier/plumbing/_fletcher.c
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CEPH_PACKAGES) >/dev/null
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@# An editable install compiles nothing, and where PYTHONDONTWRITEBYTECODE is set every command
	@# compiled its modules at each start (0.08 s of zg-upload's 0.3 s start, measured)
	$(PYTHON) -m compileall -q zfsglacier
	@mkdir -p .make && touch $@

test: install
	$(PYTHON) -m pytest -q

# What CI runs: the suite and the OpenZFS tier.  A guest image is found or built (~14 min, from
# Debian packages) while the suite runs, then the tier boots it.
check: install openzfs-deps
	$(MAKE) -j2 test openzfs-image
	$(PYTHON) tests/openzfs/run.py --ci

# The ZFS tests again, inside a QEMU guest running OpenZFS 2.3 (tests/openzfs/): uses a cached or
# packed guest image, else builds one; skipped with the reason where no guest can run.
test-openzfs: install openzfs-deps
	$(PYTHON) tests/openzfs/run.py

openzfs-image: openzfs-deps
	$(PYTHON) tests/openzfs/guest.py

openzfs-deps:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils openssh-client mmdebstrap e2fsprogs debian-archive-keyring zstd >/dev/null

bench: install
	$(PYTHON) -m pip install -q --disable-pip-version-check awscli
	$(PYTHON) -m pytest -q benchmarks --benchmark-enable --benchmark-only \
		--benchmark-columns=min,mean,rounds --benchmark-json=.make/bench.json -p no:randomly -s

demo: install
	$(PYTHON) tests/demo.py

vectors:
	$(PYTHON) formats/vectors/make_v1.py

clean:
	rm -rf .make build *.egg-info

# GNU make exits 2 whatever a recipe's status was, so each runbook target says the tool's own exit
# code and what it means on its last line (75: a thaw was requested, run the same target again
# later); a script that branches on the code runs the command `make -n TARGET ...` prints.
RUNBOOK_FLAGS := $(if $(filter-out 0,$(DRY_RUN)),--dry-run) $(if $(filter-out 0,$(NO_WAIT)),--no-wait)
define runbook
	@echo '$(1)'; $(1) || { code=$$?; case $$code in \
	  75) why="a thaw was requested and is not finished: run the same make command again later";; \
	  *) why="see the line above; README.md, Exit codes";; esac; \
	  echo "make $@: $(firstword $(notdir $(1))) exited $$code: $$why" >&2; exit $$code; }
endef

backup:
	@test -n "$(DATASET)" || { echo "make backup: set DATASET=pool/dataset" >&2; exit 2; }
	$(call runbook,$(BIN)/zg-backup -r "$(DATASET)" "$(DEST)" --key "$(PUB)" --snapshot auto $(if $(filter-out 0,$(DRY_RUN)),--dry-run))

restore:
	@test -n "$(SNAP)" -a -n "$(TARGET)" || { echo "make restore: set SNAP=pool/ds@snap TARGET=pool/new" >&2; exit 2; }
	$(call runbook,$(BIN)/zg-restore "$(DEST)" "$(SNAP)" "$(TARGET)" --key "$(KEY)" --tier "$(TIER)" $(RUNBOOK_FLAGS))

verify:
	$(call runbook,$(BIN)/zg-verify "$(DEST)" --key "$(KEY)" --tier "$(TIER)" $(if $(filter-out 0,$(NO_WAIT)),--no-wait))

docs:
	$(PYTHON) docs/make_reference.py
