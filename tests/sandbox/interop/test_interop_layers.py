"""The other layers of a profile in exports: --var, the systemd mount plan, what OCI/k8s do not carry.

How the systemd settings behave is shown by starting units under a real
service manager (tests/kernel/test_systemd_export.py); these tests check what
the exporter decides and says: bad --var input is an error with exit status
2, unbound variables and lost layers are warnings at the profile's lines, the
mount plan follows the region rules for the cases the built-in profiles do
not reach, and the OCI object gains no field the format does not have.
"""
import json

import pytest
from click.testing import CliRunner

from sandbox import interop
from sandbox.cli import cli
from sandbox.interop.systemd_fs import below, plan_fs, quote
from sandbox.policy import load_profile
from tests.conftest import REPO


def export(*args):
    return CliRunner().invoke(cli, ["export", *args])


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def plan(entries):
    p = plan_fs([(w, path, None) for w, path in entries])
    return {k: [v for kk, v in p.settings if kk == k] for k, _ in p.settings}, p


def at(profile: str, text: str, token: str | None = None) -> str:
    """profiles/NAME.yaml:LINE:COL of the first line holding *text*, COL where *token*
    (default: *text*) starts in it: the positions exports report, found in the file
    as it is now."""
    lines = (REPO / "profiles" / f"{profile}.yaml").read_text().splitlines()
    n = next(i for i, line in enumerate(lines, 1) if text in line)
    return f"profiles/{profile}.yaml:{n}:{lines[n - 1].index(token or text) + 1}"


# ---------------------------------------------------------------- --var

@pytest.mark.parametrize("args, said", [
    (["default", "--var", "CWD"], "'CWD' is not NAME=VALUE"),
    (["default", "--var", "1CWD=/x"], "'1CWD' is not a variable name"),
    (["default", "--var", "CWD="], "CWD= has no value"),
    (["default", "--var", "CWD=src"], "$CWD makes the filesystem path $CWD at " + at("default", "  read: [/, $CWD", "$CWD")),
    (["web", "--var", "PORT=http"], "$PORT is a TCP port at " + at("web", "  bind: [", "${PORT}")),
    (["web", "--var", "PORT=70000"], "give a number 0..65535"),
], ids=["no equals sign", "not a name", "no value", "a relative path", "a port that is no number",
        "a port out of range"])
def test_bad_var_input_is_an_error_with_exit_status_2(args, said):
    for fmt in ("systemd", "oci", "k8s"):
        res = export(*args, "--format", fmt)
        assert res.exit_code == 2 and said in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_var_the_profile_does_not_use_is_a_warning():
    res = export("web", "--format", "systemd", "--var", "CWDD=/srv")
    assert res.exit_code == 0
    assert "warning: --var CWDD: the profile uses no $CWDD" in res.stderr


def test_unbound_variables_are_left_out_with_a_warning_naming_the_option():
    res = export("default", "--format", "systemd")
    assert res.exit_code == 0
    assert (at("default", "  read: [/, $CWD", "$CWD") + ": warning: $CWD has no unit equivalent (the command's working "
            "directory: the unit's WorkingDirectory=): its read, exec, write entries are left out; bind it "
            "with --var CWD=VALUE") in res.stderr
    assert "#   $CWD has no unit equivalent" in res.stdout
    bound = export("default", "--format", "systemd", "--var", "CWD=/srv/app", "--var", "EXEC_ROOT=/usr")
    assert "no unit equivalent" not in bound.stderr
    assert "-/srv/app" in settings(bound.stdout)["ReadWritePaths"]


def test_home_and_tmpdir_are_specifiers_unless_bound():
    s = settings(export("default", "--format", "systemd").stdout)
    assert "-%h/.ssh" in s["InaccessiblePaths"] and "-%T" in s["ReadWritePaths"]
    assert "-%t/containers" in s["InaccessiblePaths"]          # $XDG_RUNTIME_DIR: /run for a system unit
    assert not [v for vs in s.values() for v in vs if "TTY" in v]     # a service has no terminal
    s = settings(export("default", "--format", "systemd", "--var", "HOME=/home/u", "--var",
                        "TMPDIR=/srv/tmp").stdout)
    assert "-/home/u/.ssh" in s["InaccessiblePaths"] and "-/srv/tmp" in s["ReadWritePaths"]


def test_a_built_ins_deny_of_an_unset_variable_is_left_out_quietly_unless_bound():
    """default denies ${GNUPGHOME} and the like where the environment moves secrets:
    sbx run skips them when unset, and so does the export, without a warning; bound,
    they are denied."""
    res = export("default", "--format", "systemd")
    assert res.exit_code == 0 and "$GNUPGHOME" not in res.stderr and "$XAUTHORITY" not in res.stderr
    s = settings(export("default", "--format", "systemd", "--var", "GNUPGHOME=/srv/gpg").stdout)
    assert "-/srv/gpg" in s["InaccessiblePaths"] and "-%h/.Xauthority" in s["InaccessiblePaths"]


def test_a_literal_percent_is_doubled_and_odd_paths_quoted():
    assert interop.unit_path("$CWD/x", {"CWD": "/srv/50%"}) == ("/srv/50%%/x", [])
    assert interop.unit_path("$APP/x", {}) == (None, ["APP"])
    assert quote("/srv/a b:c") == '"/srv/a b:c"'
    assert quote('/srv/a"b\\c') == '"/srv/a\\"b\\\\c"'
    assert quote("%h/.ssh") == "%h/.ssh"


# ---------------------------------------------------------------- the systemd mount plan

def test_below_is_textual_and_everything_lies_below_root():
    assert below("/usr/bin", "/usr") and below("/usr", "/usr") and not below("/usrx", "/usr")
    assert below("%h/.ssh", "/") and not below("%h/.ssh", "/root")


def test_a_write_grant_at_root_leaves_protectsystem_out():
    s, _ = plan([("read", "/"), ("exec", "/"), ("write", "/"), ("deny", "/etc/shadow")])
    assert "ProtectSystem" not in s and s["InaccessiblePaths"] == ["-/etc/shadow"]


def test_a_grant_below_a_denied_directory_is_bound_into_an_empty_one():
    s, _ = plan([("read", "/"), ("exec", "/"), ("deny", "/srv"), ("write", "/srv/app")])
    assert s["TemporaryFileSystem"] == ["/srv:ro"]
    assert s["BindPaths"] == ["-/srv/app:/srv/app:rbind"]
    assert s["NoExecPaths"] == ["-/srv/app"]                  # the deny took exec away; write gives none back


def test_exec_narrower_than_root_states_both_flags_of_every_path():
    s, _ = plan([("read", "/"), ("exec", "/usr"), ("write", "/srv/app")])
    assert s["NoExecPaths"][0] == "/"
    assert s["BindReadOnlyPaths"] == ["-/usr:/usr:rbind"] and "-/usr" in s["ExecPaths"]
    assert s["ReadWritePaths"] == ["-/srv/app"] and "-/srv/app" in s["NoExecPaths"]


def test_strict_leaves_home_root_and_the_api_trees_writable_so_they_are_made_read_only():
    s, _ = plan([("read", "/"), ("exec", "/"), ("write", "/home/u")])
    assert set(s["ReadOnlyPaths"]) == {"-/dev", "-/proc", "-/sys", "-/home", "-/root", "-/run/user"}
    assert s["ReadWritePaths"] == ["-/home/u"]


def test_reading_less_than_root_hides_the_standard_top_level_directories_it_does_not_grant():
    s, p = plan([("list", "/"), ("read", "/usr"), ("read", "/etc"), ("write", "%T")])
    hidden = set(s["InaccessiblePaths"])
    assert {"-/home", "-/var", "-/srv", "-/root", "-/opt"} <= hidden
    assert "-/tmp" not in hidden and "-/usr" not in hidden and "-/etc" not in hidden   # %T may be /tmp
    assert any("not hidden: /tmp (%T may lie there)" in n for n in p.notes)


def test_device_writes_and_ioctls_are_said():
    _, p = plan([("read", "/"), ("modify", "/dev/null"), ("ioctl-dev", "/dev/tty")])
    said = [d.message for d in p.diags]
    assert any(m.startswith("devices: a read-only mount does not stop writes") and "only /dev/null" in m
               for m in said)
    assert any(m.startswith("ioctl-dev: systemd cannot limit device ioctls") for m in said)


# ---------------------------------------------------------------- systemd: ports, capabilities, scopes

def test_ports_capabilities_and_scopes_in_the_drop_in(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\nextends: [default]\ncapabilities: [NET_BIND_SERVICE]\n"
                    "scope:\n  signals: any\nnetwork:\n  bind: [80, 0]\n  connect: any\n")
    res = export(str(prof), "--format", "systemd")
    s = settings(res.stdout)
    assert s["CapabilityBoundingSet"] == ["", "CAP_NET_BIND_SERVICE"] and s["NoNewPrivileges"] == ["yes"]
    assert s["SocketBindDeny"] == ["tcp"] and s["SocketBindAllow"] == ["tcp:80"]
    assert f"{prof}:7:14: warning: bind port 0" in res.stderr
    assert "network connect" not in res.stderr                   # any: nothing lost
    assert "scope signals" not in res.stderr                     # any
    assert "warning: scope abstract-unix: sandbox (sbx's default): systemd 252 has no such scope" in res.stderr


def test_connect_ports_have_no_systemd_equivalent_and_say_so():
    res = export("strict-net", "--format", "systemd")
    assert at("strict-net", "  connect:", "connect") + ": warning: network connect (the profile: TCP ports none)" in res.stderr
    assert settings(res.stdout)["SocketBindDeny"] == ["tcp"] and "SocketBindAllow" not in settings(res.stdout)


# ---------------------------------------------------------------- OCI / Docker / Kubernetes

@pytest.mark.parametrize("fmt, setting", [("oci", "process.capabilities"), ("docker", "--cap-drop ALL"),
                                          ("k8s", "securityContext.capabilities")])
def test_runtime_exports_name_each_layer_they_do_not_carry(fmt, setting):
    res = export("web", "--format", fmt, "--var", "CWD=/srv/app")
    assert res.exit_code == 0, res.stderr
    err = res.stderr
    assert "capabilities (kept: CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID; sbx drops every other one as root) are not part of" in err
    assert setting in err
    assert at("web", "filesystem:") + ": warning: filesystem rules (Landlock: list /; read /usr" in err
    assert "write /srv/app $TMPDIR /dev/shm" in err                     # --var shown, unbound kept
    assert at("web", "network:") + ": warning: TCP port rules (bind 80 443 8000 8080 8443 ${PORT}" in err
    assert "sbx always sets no_new_privs" in err and "warning: scope (signals, abstract-unix" in err


def test_the_oci_object_gains_no_field():
    res = export("web", "--format", "oci")
    assert set(json.loads(res.stdout)) == {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}


def test_a_profile_without_files_or_ports_gets_no_warning_about_them(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\ndefault: errno(EPERM)\nscope:\n  signals: any\n  abstract-unix: any\n"
                    "rules:\n  - allow: [read, write, exit_group]\n")
    diags = interop.runtime_losses(load_profile(str(prof)), "oci", {})
    said = [d.message for d in diags]
    assert not any("filesystem" in m or "TCP port" in m or m.startswith("scope") for m in said)
    assert any(m.startswith("capabilities (kept: none") for m in said)
