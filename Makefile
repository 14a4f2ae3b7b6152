# sbx — build, install, test, benchmark.
# `make install` : Debian packages (as root), a venv in .venv with sbx and its deps, /usr/local/bin/sbx
# `make syscalls`: regenerate the syscall modules (numbers and ages) from bpf_filters/syscalls/tbl
# `make test`    : install + test deps, rebuild the eBPF object from source, run the whole suite
#                  (under CI=true every kernel test is required: a skip fails the run)

PYTHON   ?= python3
VENV     ?= .venv
VPY      := $(VENV)/bin/python
BINDIR   ?= /usr/local/bin
APT_RUN  := python3-venv python3-pip
APT_TEST := clang llvm libbpf-dev bpftool gcc libc6-dev make git strace sqlite3 tar xz-utils curl \
            runc busybox-static bubblewrap firejail hyperfine nginx-light redis-server systemd crun openssl
PYTEST_ARGS ?=

.PHONY: install deps-run deps-test venv test bench bpf syscalls syscall-ages lint clean

install: deps-run venv
	@if [ -w "$(BINDIR)" ]; then \
	  $(VPY) tools/make_launcher.py "$(BINDIR)/sbx" && echo "installed $(BINDIR)/sbx"; \
	else \
	  echo "$(BINDIR) is not writable: use $(CURDIR)/$(VENV)/bin/sbx"; fi

deps-run:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(APT_RUN) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_RUN) >/dev/null; }; fi

deps-test:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(APT_TEST) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_TEST) >/dev/null; }; \
	else echo "not root: install $(APT_TEST) yourself for the full suite"; fi

venv:
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'

test: install deps-test bpf
	@if [ "$${CI:-}" = true ]; then export SBX_REQUIRE_KERNEL=1; fi; \
	  $(VPY) tools/gen_syscalls.py --check && \
	  $(VPY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bpf:
	@if command -v clang >/dev/null && command -v bpftool >/dev/null; then \
	  sh tools/build_bpf.sh; \
	else echo "clang/bpftool missing: using the shipped sandbox/ebpf/sbx.bpf.o"; fi

syscalls:
	$(PYTHON) tools/gen_syscalls.py

# Re-derive bpf_filters/syscalls/tbl/introduced.tsv from a Linux clone with the
# release tags (docs/syscall-ages.md), then regenerate the modules.
syscall-ages:
	@[ -n "$(LINUX)" ] || { echo "usage: make syscall-ages LINUX=/path/to/linux-clone"; exit 2; }
	$(PYTHON) tools/syscall_history.py --git "$(LINUX)"
	$(PYTHON) tools/gen_syscalls.py

bench: install deps-test
	$(VPY) bench/run.py

lint:
	$(VPY) -m pyflakes sandbox bpf_filters tests tools bench 2>/dev/null || $(VPY) -m compileall -q sandbox bpf_filters

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
