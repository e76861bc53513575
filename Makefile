# zfsglacier: every target a user or CI needs.  `make help` lists them.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .make/installed
DEB_PACKAGES := zfs-fuse pbzip2 openssl zstd bzip2 rclone

.PHONY: help install test bench demo clean vectors

help:
	@echo "make install   system packages (zfs-fuse, pbzip2, ...) and the Python package, editable"
	@echo "make demo      a real ZFS dataset backed up to file:// and restored, verified file by file"
	@echo "make test      the test suite (what CI runs)"
	@echo "make bench     the benchmark suite: speed and memory against the 2013 recipe and native tools"

install: $(STAMP)

$(STAMP): pyproject.toml
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@mkdir -p .make && touch $@

test: install
	$(PYTHON) -m pytest -q

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
