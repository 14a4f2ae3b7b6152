#!/bin/sh
# Build sandbox/ebpf/sbx.bpf.o (the CO-RE eBPF object loaded by
# sandbox/ebpf/probe.py) from sbx.bpf.c.  vmlinux.h is generated from the running
# kernel's BTF into a build directory and never committed; CO-RE relocations
# make the object load on other kernels with BTF.
# Needs: clang (>= 12), bpftool, libbpf-dev (Debian: clang llvm libbpf-dev bpftool).
# Usage: tools/build_bpf.sh [BUILD_DIR]   (default: build/bpf)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build/bpf"}
src="$root/sandbox/ebpf"
btf=${SBX_VMLINUX_BTF:-/sys/kernel/btf/vmlinux}
clang=${CLANG:-clang}
bpftool=${BPFTOOL:-bpftool}

for tool in "$clang" "$bpftool"; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build_bpf: '$tool' not found (apt-get install clang llvm libbpf-dev bpftool)" >&2
        exit 1
    }
done
[ -r "$btf" ] || { echo "build_bpf: no kernel BTF at $btf" >&2; exit 1; }
[ -r /usr/include/bpf/bpf_helpers.h ] || {
    echo "build_bpf: libbpf headers missing (apt-get install libbpf-dev)" >&2
    exit 1
}

mkdir -p "$build"
"$bpftool" btf dump file "$btf" format c > "$build/vmlinux.h.tmp"
mv "$build/vmlinux.h.tmp" "$build/vmlinux.h"

"$clang" -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror \
    -I"$build" -I"$src" -c "$src/sbx.bpf.c" -o "$build/sbx.bpf.o"
# Drop DWARF (kept: BTF and CO-RE relocations, which libbpf needs).
llvm-strip -g "$build/sbx.bpf.o" 2>/dev/null || true
mv "$build/sbx.bpf.o" "$src/sbx.bpf.o"
echo "build_bpf: wrote $src/sbx.bpf.o"
