"""``sbx analyze``: the syscalls a program can make, found in its ELF file and its libraries.

Pipeline, one module per step:

- ``elf``: read one ELF file (sections, dynamic tags, symbols, relocations, build-id);
  ``ehframe``: function extents from ``.eh_frame``;
- ``loader``: find the libraries the dynamic loader would load (DT_NEEDED, RPATH/RUNPATH,
  ld.so.cache, default paths);
- ``code``: disassemble one object (capstone), split it into functions and record per
  function its syscall sites, calls, tail jumps, address-taken functions;
  ``dataflow``: the constant propagation that recovers syscall numbers and constant
  arguments; ``wrappers``: what is known about libc's wrappers, dlopen, dlsym and exec;
- ``cache``: per-object summaries stored by build-id;
- ``callgraph``: link the summaries of a program's objects and walk what is reachable;
- ``result``: turn what is reachable into a profile (through ``sandbox.trace``'s writer),
  an explanation or JSON.
"""
