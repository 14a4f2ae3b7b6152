"""sbx trace's files and ports, without a kernel: intents of each file syscall, the
generalisation rules of docs/trace.md on fixed accesses, merging, --extends, and the
written sections read back by the profile loader."""
from __future__ import annotations

import os
import random
import re

import pytest

from sandbox import trace as tr
from sandbox.trace import files as tf
from sandbox.confine import RIGHT_WORDS
from sandbox.policy import load_profile
from sandbox.policy.constants import CONSTANTS as C
from bpf_filters.syscalls.arguments import PATH_ARGS
from sandbox.trace.access import Accesses, FileLog, intents
from tests.conftest import REPO

HOME, CWD, TMP, ROOT = "/home/u", "/home/u/proj", "/tmp", "/opt/app"
PLACES = tf.Places(
    dirs=(("CWD", CWD), ("TMPDIR", TMP), ("HOME", HOME), ("EXEC_ROOT", ROOT), ("TTY", "/dev/pts/3")),
    secrets=(("$HOME/.ssh", f"{HOME}/.ssh"), ("/etc/shadow", "/etc/shadow"),
             ("/root", "/root")))
O = {k: C[k] for k in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_DIRECTORY", "O_PATH",
                       "O_TMPFILE")}


@pytest.mark.parametrize("name, flags, path2, expected", [
    ("openat", 0, None, [("read", b"/p")]),
    ("openat", O["O_DIRECTORY"], None, [("list", b"/p")]),
    ("openat", O["O_WRONLY"], None, [("modify", b"/p")]),
    ("openat", O["O_RDWR"], None, [("read", b"/p"), ("modify", b"/p")]),
    ("openat", O["O_TRUNC"], None, [("read", b"/p"), ("modify", b"/p")]),
    ("openat", O["O_WRONLY"] | O["O_CREAT"] | O["O_TRUNC"], None,
     [("modify", b"/p"), ("create-file", b"/p")]),
    ("creat", O["O_WRONLY"] | O["O_CREAT"] | O["O_TRUNC"], None,
     [("modify", b"/p"), ("create-file", b"/p")]),
    ("openat", O["O_PATH"], None, []),
    ("openat2", O["O_TMPFILE"] | O["O_RDWR"], None, [("write-in", b"/p")]),
    ("execve", 0, None, [("exec", b"/p")]),
    ("mkdirat", 0, None, [("create", b"/p")]),
    ("symlink", 0, None, [("create", b"/p")]),
    ("mknodat", C["S_IFIFO"], None, [("create", b"/p")]),
    ("mknodat", C["S_IFCHR"], None, [("device", b"/p")]),
    ("unlinkat", C["AT_REMOVEDIR"], None, [("remove", b"/p")]),
    ("truncate", 0, None, [("modify", b"/p")]),
    ("renameat2", 0, b"/q", [("remove", b"/p"), ("create", b"/q")]),
    ("renameat2", 2, b"/q", [("remove", b"/p"), ("create", b"/q"), ("remove", b"/q"),
                             ("create", b"/p")]),                       # RENAME_EXCHANGE
    ("linkat", 0, b"/q", [("refer", b"/p"), ("create", b"/q")]),
    ("bind", 0, None, [("create", b"/p")]),                             # a Unix socket's file
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_file_syscall_means_what_landlock_checks(name, flags, path2, expected):
    assert intents(name, flags, b"/p", path2) == expected


def test_the_ebpf_program_reads_the_same_syscalls_at_the_same_arguments():
    """sbx.bpf.c's path_args mirrors arguments.PATH_ARGS (execs come from
    sched_process_exec there)."""
    from bpf_filters import syscalls
    source = (REPO / "sandbox/ebpf/sbx.bpf.c").read_text()
    numbers = (REPO / "sandbox/ebpf/syscall_nr.h").read_text()      # generated from the tables
    table = syscalls.table("x86_64")
    body = source[source.index("static __always_inline bool path_args"):]
    body = body[:body.index("\n}\n")]
    for name, (d1, p1, d2, p2, flags) in PATH_ARGS.items():
        assert re.search(rf"#define NR_{name}\s+{table.nr(name)}\n", numbers), name
        if name.startswith("exec"):
            continue
        case = re.search(rf"case NR_{name}:(.*?)return true;", body, re.S) or \
            re.search(rf"case NR_{name}:.*?case[^;]*?:(.*?)return true;", body, re.S)
        assert case, name
        text = case.group(1)
        assert f"*p1 = a[{p1}]" in text, name
        if d1 is not None:
            assert f"*d1 = a[{d1}]" in text, name
        if p2 is not None:
            assert f"*p2 = a[{p2}]" in text and f"*d2 = a[{d2}]" in text or \
                f"*p2 = a[{p2}]" in text and d2 is None, name
        if isinstance(flags, int):
            assert f"*flags = a[{flags}]" in text or f"a[{flags}]" in text, name


def test_a_cut_path_is_kept_as_its_deepest_whole_directory():
    log = FileLog()
    log.add("openat", 0, b"/data/long/na", cut=(True, False))
    log.add("mkdirat", 0, b"/data/long2/x", cut=(True, False))
    assert log.calls == {("read-beneath", b"/data/long"): 1, ("write-in", b"/data/long2"): 1}
    assert log.cut == 2


# -- generalisation ----------------------------------------------------------------------

def general(*words, created=(), moves=(), ports=None, places=PLACES) -> dict:
    acc = Accesses(words={(w, p): 1 for w, p in words}, created=set(created),
                   moves=set(moves), ports=ports or {})
    files, net = tf.generalise(acc, places)
    out = {w: sorted(items) for w, items in files.grants.items()}
    if files.denies:
        out["deny"] = sorted(files.denies)
    return out


@pytest.mark.parametrize("words, expected", [
    ([("read", "/usr/lib/x/y.so"), ("exec", "/usr/bin/git"), ("list", "/usr/share/doc")],
     {"read": ["/usr"], "exec": ["/usr"]}),
    ([("read", "/etc/hostname")], {"read": ["/etc"], "deny": ["/etc/shadow"]}),
    ([("read", "/proc/1234/status"), ("modify", "/proc/1234/oom_score_adj")],
     {"read": ["/proc"], "modify": ["/proc"]}),
    ([("modify", "/etc/motd")], {"modify": ["/etc/motd"]}),                  # writes stay exact
    # the run's own terminal is $TTY; another one (a terminal it made) all of /dev/pts
    ([("modify", "/dev/pts/3"), ("read", "/dev/urandom"), ("write", "/dev/shm")],
     {"read": ["/dev/urandom"], "modify": ["$TTY"], "write": ["/dev/shm"],
      "ioctl-dev": ["$TTY", "/dev/urandom"]}),
    ([("modify", "/dev/pts/3"), ("read", "/dev/ptmx"), ("modify", "/dev/pts/7")],
     {"read": ["/dev/ptmx"], "modify": ["/dev/pts"], "ioctl-dev": ["/dev/ptmx", "/dev/pts"]}),
    ([("read", f"{CWD}/a.conf"), ("write", f"{CWD}/build"), ("modify", f"{CWD}/x.log")],
     {"read": ["$CWD/a.conf"], "write": ["$CWD"]}),
    ([("read", f"{TMP}/tmp.XYZ"), ("write", f"{TMP}/d")], {"read": ["$TMPDIR"],
                                                          "write": ["$TMPDIR"]}),
    ([("read", f"{ROOT}/lib/m.so"), ("exec", f"{ROOT}/bin/app"), ("write", f"{ROOT}/var")],
     {"read": ["$EXEC_ROOT"], "exec": ["$EXEC_ROOT"], "write": ["$EXEC_ROOT/var"]}),
    ([("read", f"{HOME}/.apprc"), ("write", f"{HOME}/out"), ("list", f"{HOME}/data")],
     {"read": ["$HOME/.apprc"], "list": ["$HOME/data"], "write": ["$HOME/out"]}),
    ([("read", "/srv/data/x.csv"), ("modify", "/srv/data/y.csv")],
     {"read": ["/srv/data/x.csv"], "modify": ["/srv/data/y.csv"]}),
], ids=["system dirs", "a secret below a wide rule is denied", "proc", "system writes exact",
        "dev: own terminal", "dev: a terminal made", "cwd: writes collapse, reads exact", "tmpdir", "exec root", "home exact",
        "elsewhere exact"])
def test_generalisation_rules(words, expected):
    assert general(*words) == expected


def test_devices_are_granted_exactly_with_ioctl_though_the_built_ins_deny_dev():
    """The built-ins deny /dev to make the devices an allow-list, not as a secret: a
    traced device is granted as such (with ioctl-dev, which a shell's isatty needs),
    never kept as a secret without it."""
    places = tf.places_for({"HOME": "/nonexistent", "TMPDIR": "/tmp"}, "/tmp", None)
    assert "/dev" not in tf.secret_templates() and "/etc/shadow" in tf.secret_templates()
    acc = Accesses(words={("modify", "/dev/null"): 1, ("read", "/dev/urandom"): 1})
    files, _ = tf.generalise(acc, places)
    assert files.grants["ioctl-dev"] == {"/dev/null": "", "/dev/urandom": ""}
    assert files.grants["modify"] == {"/dev/null": ""} and files.grants["read"] == {"/dev/urandom": ""}


def test_an_access_in_a_secret_directory_is_kept_exact_and_flagged():
    acc = Accesses(words={("read", f"{HOME}/.ssh/config"): 1, ("read", f"{HOME}/.bashrc"): 1})
    files, _ = tf.generalise(acc, PLACES)
    assert files.grants["read"] == {
        "$HOME/.ssh/config": "secret: kept exact ($HOME/.ssh is denied by the built-in profiles)",
        "$HOME/.bashrc": ""}
    assert not files.denies                   # no wider rule covers $HOME/.ssh


def test_many_files_of_one_directory_never_widen_into_a_secret():
    many = [("read", f"{HOME}/.ssh/k{i}") for i in range(tf.READ_LIMIT + 5)]
    assert general(*many)["read"] == sorted(f"$HOME/.ssh/k{i}" for i in range(tf.READ_LIMIT + 5))


def test_the_working_directory_inside_a_secret_is_a_place_not_a_secret():
    places = tf.Places(dirs=(("CWD", "/root/src"), ("HOME", "/root")),
                       secrets=(("/root", "/root"),))
    assert general(("read", "/root/src/main.c"), ("write", "/root/src/out"),
                   ("read", "/root/.gitconfig"), places=places) == {
        "read": ["$CWD/main.c", "$HOME/.gitconfig"], "write": ["$CWD"]}


def test_more_than_the_limit_of_files_in_one_directory_becomes_the_directory():
    few = [("read", f"/srv/a/f{i}") for i in range(tf.READ_LIMIT)]
    many = [("read", f"/srv/b/f{i}") for i in range(tf.READ_LIMIT + 1)]
    out = general(*few, *many)
    assert out["read"] == sorted([f"/srv/a/f{i}" for i in range(tf.READ_LIMIT)] + ["/srv/b"])


def test_what_the_run_created_is_granted_on_the_directory_above_it():
    out = general(("write", f"{HOME}/out"), ("write", f"{HOME}/out/new"),
                  ("read", f"{HOME}/out/new/sub/r.txt"), ("list", f"{HOME}/out/new"),
                  ("exec", f"{HOME}/out/new/tool"),
                  created={f"{HOME}/out/new", f"{HOME}/out/new/sub", f"{HOME}/out/new/tool",
                           f"{HOME}/out/new/sub/r.txt"})
    assert out == {"read": ["$HOME/out"], "exec": ["$HOME/out"], "write": ["$HOME/out"]}


def test_a_move_across_directories_gives_the_source_the_destination_s_rights():
    out = general(("write", f"{HOME}/a"), ("write", f"{HOME}/b"), ("read", f"{HOME}/b"),
                  moves={(f"{HOME}/a", f"{HOME}/b")})
    assert out == {"read": ["$HOME/a", "$HOME/b"], "write": ["$HOME/a", "$HOME/b"]}


def test_rules_a_wider_rule_covers_are_dropped():
    out = general(("list", "/srv"), ("read", "/srv/x"), ("read", "/srv"),
                  ("modify", f"{HOME}/o/f"), ("write", f"{HOME}/o"))
    assert out == {"read": ["/srv"], "write": ["$HOME/o"]}


def test_ports_are_kept_as_seen():
    acc = Accesses(ports={("bind", 8080): 2, ("connect", 443): 1, ("connect", 0): 1})
    _, net = tf.generalise(acc, PLACES)
    assert (net.bind, net.connect) == ({"8080"}, {"0", "443"})


def test_the_same_accesses_in_any_order_give_the_same_sections():
    words = [("read", f"/srv/d/f{i}") for i in range(20)] + [
        ("write", f"{CWD}/b"), ("read", "/etc/x"), ("exec", "/usr/bin/a"),
        ("read", f"{HOME}/.ssh/config"), ("modify", "/dev/null")]
    texts = set()
    for seed in range(5):
        random.Random(seed).shuffle(words)
        files, net = tf.generalise(Accesses(words=dict((w, 1) for w in words)), PLACES)
        texts.add("\n".join(tf.section_lines(files, net)))
    assert len(texts) == 1


# -- merging, --extends, the written sections ---------------------------------------------

def test_merging_is_a_union_and_a_part_without_a_section_is_unrestricted():
    a = tf.Files({"read": {"/srv/a": ""}, "write": {"$CWD": ""}}, {"/etc/shadow"})
    b = tf.Files({"read": {"/srv": "", "$CWD/x": ""}, "modify": {"$CWD/y": ""}})
    merged = tf.merge_files([a, b])
    assert merged.grants == {"read": {"/srv": "", "$CWD/x": ""}, "write": {"$CWD": ""}}
    assert merged.denies == {"/etc/shadow"}
    assert tf.merge_files([a, None]) is None
    n = tf.merge_net([tf.Net({"80"}, set()), tf.Net(set(), {"443"})])
    assert (n.bind, n.connect) == ({"80"}, {"443"})
    assert tf.merge_net([tf.Net({"80"}, None), tf.Net({"81"}, {"1"})]).connect is None


def sample() -> tr.Observed:
    obs = tr.Observed(calls={"openat": 3, "read": 2, "write": 1, "execve": 1},
                      commands=["/opt/app/bin/app --conf a.conf"], backends=["ebpf"])
    obs.files, obs.net = tf.generalise(Accesses(
        words={("read", f"{CWD}/a.conf"): 1, ("read", "/usr/lib/libc.so.6"): 1,
               ("exec", "/opt/app/bin/app"): 1, ("write", f"{CWD}/out"): 1,
               ("read", f"{HOME}/.ssh/known_hosts"): 1, ("read", "/etc/passwd"): 1},
        ports={("connect", 443): 1}), PLACES)
    return obs


def test_the_written_sections_load_and_read_back_to_the_same_sections(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(tr.write_profile(sample(), "trace-app"))
    text = path.read_text()
    assert text.endswith(
        "\nfilesystem:\n"
        "  read:\n"
        "    - $CWD/a.conf\n"
        f"{'    - $HOME/.ssh/known_hosts':<40} "
        "# secret: kept exact ($HOME/.ssh is denied by the built-in profiles)\n"
        "    - /etc\n"
        "    - /usr\n"
        "  exec: [$EXEC_ROOT]\n"
        "  write: [$CWD]\n"
        "  deny: [/etc/shadow]\n"
        "\n"
        "network:\n"
        "  bind: []\n"
        "  connect: [443]\n")
    prof = load_profile(str(path))
    assert {(w, t) for w, t, _ in prof.fs} == {
        ("read", "$CWD/a.conf"), ("read", "$HOME/.ssh/known_hosts"),
        ("read", "/etc"), ("read", "/usr"), ("exec", "$EXEC_ROOT"), ("write", "$CWD"),
        ("deny", "/etc/shadow")}
    back = tr.observed_from_profile(prof)
    assert back.files == sample().files and back.net == sample().net
    again = tmp_path / "q.yaml"
    again.write_text(tr.write_profile(back, "trace-app"))
    assert again.read_text().split("\nfilesystem:")[1] == text.split("\nfilesystem:")[1]


def test_every_word_the_writer_uses_is_a_word_of_the_profile_language():
    assert set(tf.WORDS) <= set(RIGHT_WORDS)


def test_extends_writes_only_what_the_base_does_not_grant(tmp_path):
    base = load_profile("default")              # read: [/ ...], write: [$CWD, $TMPDIR ...]
    files, net = tf.without_base(sample().files, sample().net, base)
    assert files.grants == {"read": {"$HOME/.ssh/known_hosts": "secret: kept exact ($HOME/.ssh "
                                                               "is denied by the built-in profiles)"}}
    assert net is None                          # default leaves the network unrestricted
    web = load_profile("web")                   # connect: [53, 80, 443, ...]
    _, net = tf.without_base(sample().files, sample().net, web)
    assert (net.bind, net.connect) == (set(), set())
    path = tmp_path / "x.yaml"
    path.write_text(tr.write_profile(sample(), "x", base=base, base_ref="default"))
    prof = load_profile(str(path))              # loads, and inherits default's section
    assert ("read", "$HOME/.ssh/known_hosts") in {(w, t) for w, t, _ in prof.fs}
    assert ("deny", "$HOME/.ssh") in {(w, t) for w, t, _ in prof.fs}


def test_places_skip_what_cannot_name_a_place(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    places = tf.places_for({"HOME": str(home), "TMPDIR": str(tmp_path)}, "/", "/usr/bin/true")
    assert dict(places.dirs) == {"TMPDIR": str(tmp_path), "HOME": str(home)}   # not / nor /usr
    assert ("$HOME/.ssh", str(home / ".ssh")) in places.secrets
    assert all(os.path.lexists(real) for _, real in places.secrets)


def test_the_secrets_are_what_the_built_in_profiles_deny():
    from sandbox.policy import builtin_names
    denied = {t for n in builtin_names() for w, t, _ in load_profile(n).fs or () if w == "deny"}
    assert tf.secret_templates() == sorted(denied - {"/dev"})      # the devices: an allow-list
    assert {"$HOME/.ssh", "/etc/shadow", "/root", "/dev"} <= denied
