"""Exported profiles enforced by real container runtimes: runc (and crun) run busybox under them.

Each test builds an OCI bundle (a busybox-static rootfs, ``runc spec`` with the
process and ``linux.seccomp`` replaced by ``sbx export``'s JSON), runs it with a
unique container id and deletes the container afterwards.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from sandbox import interop
from sandbox.cli import cli
from sandbox.policy import load_profile
from tests.conftest import need

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
RUNC = shutil.which("runc")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
APPLETS = ("sh", "echo", "mkdir", "cat", "true", "unshare", "linux32", "linux64")


def is_static_elf(path: str) -> bool:
    """No PT_INTERP program header: the binary runs in an empty rootfs."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


@pytest.fixture
def container(tmp_path):
    need(os.geteuid() == 0, "runc needs root to create containers")
    need(RUNC is not None, "runc is not installed (apt-get install runc)")
    need(BUSYBOX is not None and is_static_elf(BUSYBOX), "no static busybox (apt-get install busybox-static)")
    rootfs = tmp_path / "rootfs"
    for d in ("bin", "tmp", "proc", "dev", "sys"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", rootfs / "bin" / applet)
    subprocess.run([RUNC, "spec"], cwd=tmp_path, check=True)
    base = json.loads((tmp_path / "config.json").read_text())

    def configure(seccomp: dict | None, argv, no_new_privileges: bool = True) -> None:
        config = json.loads(json.dumps(base))
        config["process"].update(args=list(argv), terminal=False, noNewPrivileges=no_new_privileges)
        config["root"]["readonly"] = False
        if seccomp is None:
            config["linux"].pop("seccomp", None)
        else:
            config["linux"]["seccomp"] = seccomp
        (tmp_path / "config.json").write_text(json.dumps(config))

    def run(seccomp: dict | None, *argv: str, no_new_privileges: bool = True) -> subprocess.CompletedProcess:
        configure(seccomp, argv, no_new_privileges)
        cid = f"sbx-test-{uuid.uuid4().hex[:12]}"
        try:
            return subprocess.run([RUNC, "run", "--bundle", str(tmp_path), cid], capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            subprocess.run([RUNC, "delete", "-f", cid], capture_output=True)
    run.configure = configure          # the bundle alone, for another runtime (crun)
    return run


def exported(profile_text: str | None = None, tmp=None, ref: str | None = None) -> dict:
    if profile_text is not None:
        path = tmp / "profile.yaml"
        path.write_text(profile_text)
        ref = str(path)
    spec, _ = interop.export_oci(interop.analyze(load_profile(ref)))
    return spec


def docker_default(tmp_path) -> str:
    """Our docker-default fixture imported (no capabilities, x86_64), written as a profile."""
    with open(os.path.join(FIXTURES, "docker-default.json")) as fh:
        text, _ = interop.import_oci(fh.read(), "docker-default.json", interop.ImportOptions())
    path = tmp_path / "docker-default.yaml"
    path.write_text(text)
    return str(path)


def test_allowed_commands_run_under_the_imported_and_exported_docker_default(container, tmp_path):
    spec = exported(ref=docker_default(tmp_path))
    res = container(spec, "/bin/busybox", "echo", "ok")
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr
    res = container(spec, "/bin/sh", "-c", "echo piped | cat")       # fork: clone without namespace flags
    assert (res.returncode, res.stdout) == (0, "piped\n"), res.stderr


def test_a_denied_syscall_fails_inside_the_container(container, tmp_path):
    """unshare is denied by Docker's default without CAP_SYS_ADMIN; without a filter it works."""
    spec = exported(ref=docker_default(tmp_path))
    res = container(spec, "/bin/unshare", "-U", "true")
    assert res.returncode != 0 and "Operation not permitted" in res.stderr, res
    res = container(None, "/bin/unshare", "-U", "true")
    assert res.returncode == 0, res.stderr


def test_the_rule_errno_reaches_the_program(container, tmp_path):
    text = f"""name: no-mkdir
extends: [{docker_default(tmp_path)}]
rules:
  - errno(EACCES): [mkdir, mkdirat]
"""
    spec = exported(text, tmp_path)
    res = container(spec, "/bin/mkdir", "/tmp/x")
    assert res.returncode != 0 and "Permission denied" in res.stderr, res
    assert not (tmp_path / "rootfs" / "tmp" / "x").exists()
    res = container(exported(ref=docker_default(tmp_path)), "/bin/mkdir", "/tmp/x")
    assert res.returncode == 0, res.stderr


def test_an_argument_condition_is_enforced(container, tmp_path):
    """personality(PER_LINUX32) denied, personality(PER_LINUX) allowed: first match resolved into entries."""
    text = f"""name: no-linux32
extends: [{docker_default(tmp_path)}]
rules:
  - errno(EPERM): personality
    when: ["arg0 == PER_LINUX32"]
"""
    spec = exported(text, tmp_path)
    allowed = {(a["op"], a["value"]) for e in spec["syscalls"] if e["names"] == ["personality"]
               for a in e["args"]}
    assert allowed == {("SCMP_CMP_EQ", v) for v in (0, 0x20000, 0x20008, 0xFFFFFFFF)}   # 8 is gone
    res = container(spec, "/bin/linux32", "/bin/true")
    assert res.returncode != 0 and "Operation not permitted" in res.stderr, res
    res = container(spec, "/bin/linux64", "/bin/true")
    assert res.returncode == 0, res.stderr


def test_kill_process_ends_the_container_process_with_sigsys(container, tmp_path):
    spec = exported("name: t\ndefault: allow\nrules:\n  - kill-process: [mkdir, mkdirat]\n", tmp_path)
    assert [(e["names"], e["action"]) for e in spec["syscalls"]] == [(["mkdir", "mkdirat"],
                                                                      "SCMP_ACT_KILL_PROCESS")]
    res = container(spec, "/bin/mkdir", "/tmp/y")
    assert res.returncode == 128 + 31, res          # SIGSYS
    assert container(spec, "/bin/echo", "alive").stdout == "alive\n"


def test_the_builtin_default_profile_with_low_word_masks_runs_a_shell(container):
    """sbx's own default (ioctl, socket and clone conditions as masked entries) under runc."""
    spec = exported(ref="default")
    assert any(a["op"] == "SCMP_CMP_MASKED_EQ" and a["value"] & 0xFFFFFFFF == a["value"]
               for e in spec["syscalls"] if e["names"] == ["ioctl"] for a in e["args"])
    res = container(spec, "/bin/sh", "-c", "echo piped | cat; mkdir /tmp/d && echo made")
    assert (res.returncode, res.stdout) == (0, "piped\nmade\n"), res.stderr
    res = container(spec, "/bin/unshare", "-U", "true")
    assert res.returncode != 0 and "Operation not permitted" in res.stderr, res


@pytest.fixture
def traced_busybox(tmp_path):
    """A profile traced by `sbx trace` from busybox itself (outside any container)."""
    need(BUSYBOX is not None, "no busybox")
    out = tmp_path / "traced.yaml"
    sbx = os.path.join(os.path.dirname(sys.executable), "sbx")
    res = subprocess.run([sbx, "trace", "-o", str(out), "--", BUSYBOX, "sh", "-c", "echo hi | cat"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return str(out)


def export_cli(*args: str) -> tuple[dict, str]:
    res = CliRunner().invoke(cli, ["export", *args, "--format", "oci"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout), res.stderr


@pytest.mark.parametrize("nnp", [True, False], ids=["noNewPrivileges (filter just before exec)",
                                                      "without noNewPrivileges (Docker's and Kubernetes' default)"])
def test_a_traced_profile_runs_under_runc_with_the_runtime_preset(container, traced_busybox, nnp):
    spec, stderr = export_cli(traced_busybox)
    assert "added the OCI runtime preset (profiles/presets/oci-runtime.yaml)" in stderr
    assert "getdents64" in stderr                    # the /proc/self/fd sweep was never traced
    res = container(spec, "/bin/sh", "-c", "echo hi | cat", no_new_privileges=nnp)
    assert (res.returncode, res.stdout) == (0, "hi\n"), res.stderr
    # the profile still decides what the preset does not name: mkdir was never traced
    res = container(spec, "/bin/mkdir", "/tmp/x", no_new_privileges=nnp)
    assert res.returncode != 0 and "Operation not permitted" in res.stderr, res


def test_without_the_runtime_preset_runc_stops_before_the_command(container, traced_busybox):
    spec, stderr = export_cli(traced_busybox, "--no-runtime-preset")
    assert "without the OCI runtime preset" in stderr
    res = container(spec, "/bin/sh", "-c", "echo hi | cat")
    assert res.returncode != 0 and res.stdout == "" and "/proc/self/fd" in res.stderr, res


@pytest.mark.parametrize("preset, nnp, works", [
    (True, True, True), (True, False, True), (False, False, False)],
    ids=["crun with the preset, noNewPrivileges", "crun with the preset, without noNewPrivileges",
         "crun without the preset, without noNewPrivileges: capabilities fail"])
def test_a_traced_profile_under_crun(container, traced_busybox, tmp_path, preset, nnp, works):
    """crun installs the filter before setting capabilities when noNewPrivileges is off.

    crun needs a private mount namespace without the cgroup2 `unified` mount
    on this hybrid-cgroup host (see DESIGN.md); the bundle is the runc one.
    """
    crun = shutil.which("crun")
    need(crun is not None, "crun is not installed (apt-get install crun)")
    spec, _ = export_cli(traced_busybox, *([] if preset else ["--no-runtime-preset"]))
    container.configure(spec, ["/bin/sh", "-c", "echo hi | cat"], nnp)
    cid = f"sbx-crun-{uuid.uuid4().hex[:10]}"
    script = f"umount /sys/fs/cgroup/unified 2>/dev/null; exec {crun} run --bundle {tmp_path} {cid}"
    try:
        res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["unshare", "-m", "sh", "-c", f"umount /sys/fs/cgroup/unified 2>/dev/null; "
                        f"{crun} delete -f {cid}"], capture_output=True)
    if works:
        assert (res.returncode, res.stdout) == (0, "hi\n"), res.stderr
    else:
        assert res.returncode != 0 and "Operation not permitted" in res.stdout + res.stderr, res
