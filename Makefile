# sbx — build, install, test, benchmark.
# `make install` : Debian packages (as root); a venv in $(PREFIX)/lib/sbx made from the system Python
#                  (/usr/bin/python3) with a copy of sbx and its deps, world-readable; the launcher
#                  $(PREFIX)/bin/sbx. PREFIX=/usr/local by default; DESTDIR=DIR stages it all below DIR.
# `make venv`    : the development venv .venv (sbx editable, test deps), what tests and bench run with
# `make syscalls`: regenerate the syscall modules (numbers and ages) from bpf_filters/syscalls/tbl
# `make test`    : install + test deps, rebuild the eBPF object from source, run the whole suite
#                  (under CI=true every kernel test is required: a skip fails the run)

PYTHON   ?= python3
VENV     ?= .venv
VPY      := $(VENV)/bin/python
SYSTEM_PYTHON ?= /usr/bin/python3
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib/sbx
APT_RUN  := python3-venv python3-pip
APT_TEST := clang llvm libbpf-dev bpftool gcc libc6-dev make git strace sqlite3 tar xz-utils curl \
            runc busybox-static bubblewrap firejail hyperfine nginx-light redis-server systemd crun openssl
PYTEST_ARGS ?=

.PHONY: install deps-run deps-test venv test bench bpf syscalls syscall-ages lint clean

# Every user must be able to run the installed sbx: the venv comes from the system
# interpreter (not a pyenv or venv Python under a 0700 home), holds a copy of sbx (not
# the source tree), and is made under umask 022 and then opened to all (a+rX).
install: deps-run
	@[ -x "$(SYSTEM_PYTHON)" ] || { echo "$(SYSTEM_PYTHON) is missing (Debian: apt-get install python3 python3-venv)"; exit 1; }
	@mkdir -p "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(PREFIX)/lib" 2>/dev/null; \
	if [ ! -w "$(DESTDIR)$(BINDIR)" ] || [ ! -w "$(DESTDIR)$(PREFIX)/lib" ]; then \
	  echo "$(DESTDIR)$(PREFIX) is not writable: run as root, or choose PREFIX=DIR (development: make venv, then $(VENV)/bin/sbx)"; exit 1; fi
	umask 022 && rm -rf "$(DESTDIR)$(LIBDIR)" && \
	  "$(SYSTEM_PYTHON)" -m venv "$(DESTDIR)$(LIBDIR)" && \
	  "$(DESTDIR)$(LIBDIR)/bin/python" -m pip install -q --disable-pip-version-check . && \
	  chmod -R a+rX "$(DESTDIR)$(LIBDIR)" && \
	  "$(SYSTEM_PYTHON)" tools/make_launcher.py "$(DESTDIR)$(BINDIR)/sbx" --python "$(SYSTEM_PYTHON)" \
	    --venv "$(DESTDIR)$(LIBDIR)" --destdir "$(DESTDIR)"
	@echo "installed $(DESTDIR)$(BINDIR)/sbx (venv $(DESTDIR)$(LIBDIR), from $(SYSTEM_PYTHON))"

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

test: install venv deps-test bpf
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

bench: install venv deps-test
	$(VPY) bench/run.py

lint:
	$(VPY) -m pyflakes sandbox bpf_filters tests tools bench 2>/dev/null || $(VPY) -m compileall -q sandbox bpf_filters

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
