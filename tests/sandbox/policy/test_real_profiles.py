"""``sbx import`` on the seccomp profiles Debian really ships.

containers-common's ``seccomp.json`` (Podman, CRI-O, Buildah), moby's
``default.json`` and its test fixtures from the Docker source package, and
containers/common's fixtures: each imports for Docker's capabilities without
an error, loads, and decides what the JSON says for the calls it singles out.
"""
import pytest
from click.testing import CliRunner

from bpf_filters.ir import Action, evaluate
from bpf_filters.syscalls import AUDIT_ARCH, table
from sandbox.cli import cli
from sandbox.policy import load_profile, lower
from tests.debian import package_file

pytestmark = pytest.mark.system

CONTAINERS = ("golang-github-containers-common", "/usr/share/containers/seccomp.json")
MOBY = "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/"
FILES = [CONTAINERS,
         ("golang-github-containers-common-dev",
          "/usr/share/gocode/src/github.com/containers/common/pkg/seccomp/fixtures/example.json"),
         ("golang-github-docker-docker-dev", MOBY + "default.json"),
         ("golang-github-docker-docker-dev", MOBY + "fixtures/default-old-format.json"),
         ("golang-github-docker-docker-dev", MOBY + "fixtures/example.json"),
         ("golang-github-docker-docker-dev", MOBY + "fixtures/conditional_include.json")]


def imported(tmp_path, pkg, path, caps="docker"):
    src = package_file(pkg, path)
    out = tmp_path / "imported.yaml"
    res = CliRunner().invoke(cli, ["import", src, "--caps", caps, "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert "error:" not in res.stderr and "Traceback" not in res.stderr
    return lower(load_profile(str(out))), res.stderr


def decide(policy, name, *args):
    args = (list(args) + [0] * 6)[:6]
    return evaluate(policy, AUDIT_ARCH["x86_64"], table("x86_64").nr(name), tuple(args)).action


@pytest.mark.parametrize("pkg, path", FILES, ids=[p.rsplit("/", 1)[-1] + " from " + k for k, p in FILES])
def test_real_profiles_import_without_errors_and_suggest_only_typos(tmp_path, pkg, path):
    policy, stderr = imported(tmp_path, pkg, path)
    assert any(r.action == Action("allow") for ap in policy.arches for rules in ap.rules.values() for r in rules)
    # real names the tables lack (recv, send, syscall ...) are skipped with a warning, never
    # "corrected" into unrelated syscalls
    for line in stderr.splitlines():
        if "unknown syscall" in line:
            assert "did you mean" not in line, line


def test_containers_common_null_args_entry_decides_socket_by_capability(tmp_path):
    """Its last entry ("args": null) allows every socket with CAP_AUDIT_WRITE; without it,
    netlink audit sockets get the EINVAL of the entry before it."""
    with_cap, _ = imported(tmp_path, *CONTAINERS)
    assert decide(with_cap, "socket", 16, 3, 9) == Action("allow")          # AF_NETLINK, NETLINK_AUDIT
    without, _ = imported(tmp_path, *CONTAINERS, caps="CAP_CHOWN")
    assert decide(without, "socket", 16, 3, 9) == Action("errno", 22)
    assert decide(without, "socket", 2, 1, 0) == Action("allow")
    assert with_cap.default == Action("errno", 38)                          # defaultErrnoRet 38
    assert decide(with_cap, "kexec_load") == Action("errno", 1)             # listed with EPERM
    assert decide(with_cap, "chroot") == Action("allow")                     # CAP_SYS_CHROOT


def test_moby_default_denies_namespaces_without_sys_admin(tmp_path):
    policy, _ = imported(tmp_path, "golang-github-docker-docker-dev", MOBY + "default.json")
    assert decide(policy, "clone", 0x10000000) == Action("errno", 1)       # CLONE_NEWUSER
    assert decide(policy, "clone", 0x11) == Action("allow")                 # fork-like
    assert decide(policy, "unshare") == Action("errno", 1)
