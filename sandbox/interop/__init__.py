"""Translate profiles to and from other seccomp formats: OCI/Docker JSON, systemd, Kubernetes.

Export: a profile's rules are ordered (first match wins); libseccomp, which
every OCI runtime uses, has no order.  ``analyze`` therefore splits each
syscall's argument space exactly, with binary decision diagrams over the 6x64
argument bits, into one region per action, and ``render`` writes each region
back as entries libseccomp evaluates the same way: at most one comparison per
argument per entry, several entries where one condition needs them (``in``,
``not in``, ``!=`` on a mask, a rule shadowed by an earlier one).  Regions of
different actions never overlap, so libseccomp's own precedence never matters.

Container runtimes make calls of their own after installing the filter: the
OCI runtime preset (``runtime``) puts them first.  systemd cannot check
arguments: ``systemd`` allows such calls with what systemd can express and
names each loosening.

The other layers of a profile (files, ports, capabilities, scopes: Landlock
and the launcher's) are systemd settings where systemd has them
(``layers``, ``systemd_fs``) and warnings everywhere else.

Import: an OCI/Docker JSON profile, moby's ``includes``/``excludes`` resolved
for given capabilities, architecture and kernel, becomes a commented profile
in the sbx language with runc's reading of the JSON.  Both directions report
problems as Diagnostics with positions (a profile's file:line, or the JSON's).
"""
from .analysis import (Analysis, Atom, Bdd, MAX_ENTRIES_PER_SYSCALL, OCI_ACTION, OCI_ARCH, PERMISSIVE, SYSTEMD_ARCH, SyscallPlan, analyze, cond_region, plan_syscall, render_region, set_atoms)  # noqa: F401
from .export import (K8S_GROUP, K8S_VERSIONS, export_k8s, export_oci, k8s_name, oci_entries)  # noqa: F401
from .systemd import NAMESPACES, SYSTEMD_DEFAULT, export_systemd  # noqa: F401
from .layers import bind_vars, parse_var, runtime_losses, systemd_layers, unit_path  # noqa: F401
from .systemd_fs import plan_fs  # noqa: F401
from .runtime import PRESET_PATH, load_preset, preset_note, with_runtime_preset  # noqa: F401
from .importer import (DOCKER_CAPS, FROM_OCI, FROM_OCI_OP, GOARCH, ImportOptions, ImportedRule, SCMP_ARCHES, SCMP_TO_ARCH, import_oci, parse_kernel)  # noqa: F401
