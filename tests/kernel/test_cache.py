"""The filter cache under hostile conditions: whatever is found in it, the filter installed is the one
compiled from the profile's current bytes (or sbx refuses with a clear message).

The validation logic runs in-process with ``sandbox.cache.location`` pointed
at a private directory; end-to-end runs start the real ``sbx run`` with the
same redirection (``redirected``: only the location changes, everything else
is the product) and judge by behaviour: the test profiles deny getppid with a
distinctive errno, a forged allow-all entry would let it run. A few runs use
the real locations: nobody's /run/user/65534/sbx (made for the test when
missing), and root's /var/cache/sbx only through its own entries (other
processes use that directory: it is never changed). Hang-prone entries (a
FIFO, device nodes, links to /dev/zero) are read in a subprocess with a
timeout and a memory limit.
"""
import hashlib
import os
import pwd
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap

import pytest

from sandbox import cache, launcher, running
from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALLOW_ALL = struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000)
PROFILE = "name: cached\nextends: [default]\nrules:\n  - errno({err}): getppid\n"
ERRNO = {"EXDEV": 18, "EACCES": 13, "ENOTTY": 25}
PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void)
{
    long r = syscall(SYS_getppid);
    if (r < 0)
        printf("denied %d\n", errno);
    else
        puts("ran");
    return 0;
}
"""
# sbx with its cache at argv[1]; argv[2] a umask ("-": unchanged), argv[3] an RLIMIT_FSIZE ("-": none)
REDIRECT = textwrap.dedent("""
    import os, resource, sys
    import sandbox.cache as cache
    where, umask, fsize = sys.argv[1:4]
    cache.location = lambda uid=None: where
    if umask != "-":
        os.umask(int(umask, 8))
    if fsize != "-":
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(fsize), int(fsize)))
    from sandbox.entry import main
    sys.exit(main(sys.argv[4:]))
""")
READ_ENTRY = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    import sandbox.cache as cache
    where = sys.argv[1]
    cache.location = lambda uid=None: where
    from sandbox import launcher
    print(launcher.compile_profile(sys.argv[2]).program.hex())
""")


# -- helpers ----------------------------------------------------------------------------------

_PROBE: list[str] = []
_FRESH: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def probe_program(tmp_path_factory):
    """A static program that prints what getppid does: "denied ERRNO" or "ran"."""
    need(shutil.which("gcc") is not None, "gcc is needed to build the probe")
    d = tmp_path_factory.mktemp("probe")
    os.chmod(d, 0o755)
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    shared = tempfile.mkdtemp(prefix="sbx-cache-probe-")      # readable by nobody too
    os.chmod(shared, 0o755)
    shutil.copy(d / "probe", shared)
    _PROBE[:] = [os.path.join(shared, "probe")]
    yield _PROBE[0]
    shutil.rmtree(shared, ignore_errors=True)


def profile(tmp_path, err="EXDEV", name="p.yaml") -> str:
    path = tmp_path / name
    path.write_text(PROFILE.format(err=err))
    return str(path)


def key(path: str) -> str:
    return f"{path}\0enforce\0x86_64"


def entry_of(where: str, path: str) -> str:
    return os.path.join(where, cache._entry_name(key(path)))


def fresh(path: str) -> bytes:
    """The filter compiled from the profile's current bytes, the cache not consulted
    (memoized by those bytes: the program does not depend on the file's name)."""
    with open(path) as fh:
        text = fh.read()
    if text not in _FRESH:
        _FRESH[text] = launcher.compile_profile(path, use_cache=False).program
    return _FRESH[text]


def digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def rewrite(path: str, edit) -> None:
    """Apply *edit* to the entry's lines (digest excluded) and re-seal it with a correct digest,
    so that only the check under test can reject it."""
    lines = open(path).read().split("\n")[:-2]
    lines = edit(lines)
    with open(path, "w") as fh:
        fh.write("".join(line + "\n" for line in lines + [f"digest {digest(lines)}"]))


def forged(path: str) -> str:
    """The text of a valid entry for *path* whose filter allows everything."""
    lines = open(path).read().split("\n")[:-2]
    lines = [f"filter {ALLOW_ALL.hex()}" if line.startswith("filter ") else line for line in lines]
    return "".join(line + "\n" for line in lines + [f"digest {digest(lines)}"])


def redirected(where: str, prof: str, umask: str = "-", fsize: str = "-", timeout=60):
    """A real `sbx run --profile PROF -- probe` with the cache at *where* (and sbx started
    under *umask* or an RLIMIT_FSIZE of *fsize* bytes)."""
    argv = [sys.executable, "-c", REDIRECT, where, umask, fsize, "run", "--profile", prof, "--",
            _PROBE[0]]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def behaves(res, err="EXDEV") -> None:
    assert res.returncode == 0 and res.stdout.split() == ["denied", str(ERRNO[err])], \
        f"not the profile's filter: exit {res.returncode}, {res.stdout!r}, {res.stderr[-500:]!r}"


def plant_forgery(where: str, prof: str) -> str:
    """Compile *prof* into the cache, then replace its entry with a valid allow-all one;
    returns the entry's path. (Used to show that a check, not luck, refuses it.)"""
    launcher.compile_profile(prof)
    entry = entry_of(where, prof)
    text = forged(entry)
    with open(entry, "w") as fh:
        fh.write(text)
    assert cache.lookup(key(prof), cache.fingerprint()).program == ALLOW_ALL, "the forgery must be valid"
    return entry


# -- the directory ----------------------------------------------------------------------------

def test_a_sound_entry_is_used_and_private(where, tmp_path):
    prof = profile(tmp_path)
    compiled = launcher.compile_profile(prof)
    entry = entry_of(where, prof)
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    hit = cache.lookup(key(prof), cache.fingerprint())
    assert hit is not None and hit.program == compiled.program == fresh(prof)
    behaves(redirected(where, prof))


@pytest.mark.parametrize("change", ["foreign-owner", "group-writable", "world-writable", "group-readable"])
def test_an_unsafe_directory_is_not_used(where, tmp_path, root, change):
    """A cache directory owned by someone else or open to others is never read or written."""
    prof = profile(tmp_path)
    entry = plant_forgery(where, prof)
    if change == "foreign-owner":
        os.chown(where, pwd.getpwnam("nobody").pw_uid, -1)
    else:
        os.chmod(where, {"group-writable": 0o770, "world-writable": 0o777, "group-readable": 0o740}[change])
    assert cache.usable_dir(create=False)[0] is None
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    before = sorted(os.listdir(where))
    assert launcher.compile_profile(prof).program == fresh(prof)
    assert sorted(os.listdir(where)) == before, "nothing is written into an unsafe directory"
    assert open(entry).read() == forged(entry)
    behaves(redirected(where, prof))


def test_an_ancestor_writable_by_others_is_not_trusted(tmp_path, monkeypatch):
    """/x/open/sbx with /x/open mode 0777 (not sticky): whoever can write there could swap sbx."""
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    d = str(parent / "sbx")
    monkeypatch.setattr(cache, "location", lambda uid=None: d)
    prof = profile(tmp_path)
    assert launcher.compile_profile(prof).program == fresh(prof)
    assert not os.path.exists(d), "no cache directory is created below an open ancestor"
    behaves(redirected(d, prof))
    assert not os.path.exists(d)


def test_a_symlinked_directory_is_not_used(where, tmp_path):
    """The cache directory a symbolic link (to a directory holding a forged entry): refused."""
    prof = profile(tmp_path)
    plant_forgery(where, prof)
    elsewhere = str(tmp_path / "elsewhere")
    os.rename(where, elsewhere)
    os.symlink(elsewhere, where)
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    assert launcher.compile_profile(prof).program == fresh(prof)
    behaves(redirected(where, prof))


def test_umask_000_still_makes_a_private_directory_and_entries(tmp_path):
    """Run by a shell with umask 000: the directory is 0700, entries 0600 (real sbx run)."""
    d = str(tmp_path / "cache" / "sbx")
    os.makedirs(os.path.dirname(d), mode=0o700)
    prof = profile(tmp_path)
    behaves(redirected(d, prof, umask="000"))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry_of(d, prof)).st_mode) == 0o600
    behaves(redirected(d, prof, umask="000"))


# -- entries ----------------------------------------------------------------------------------

def test_a_symlinked_entry_is_not_followed(where, tmp_path):
    """An entry that is a link to a valid forged entry elsewhere is a miss; compiling replaces
    the link itself and leaves its target unchanged."""
    prof = profile(tmp_path)
    entry = plant_forgery(where, prof)
    target = str(tmp_path / "forged-entry")
    os.rename(entry, target)
    os.symlink(target, entry)
    text = open(target).read()
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    assert launcher.compile_profile(prof).program == fresh(prof)
    assert not os.path.islink(entry) and open(target).read() == text
    behaves(redirected(where, prof))


def test_a_link_planted_at_the_temporary_name_is_not_written_through(where, tmp_path, monkeypatch):
    """store() writes a fresh file with a random name: with the name made predictable, a
    link planted there must not lead the write to its target (O_EXCL|O_NOFOLLOW)."""
    prof = profile(tmp_path)
    launcher.compile_profile(prof)                   # the directory exists
    os.unlink(entry_of(where, prof))
    monkeypatch.setattr(os, "urandom", lambda n: b"\x5a" * n)
    victim = tmp_path / "victim"
    victim.write_text("victim-untouched\n")
    planted = os.path.join(where, f".tmp-{(b'Z' * 8).hex()}")
    os.symlink(victim, planted)
    assert launcher.compile_profile(prof).program == fresh(prof)
    assert victim.read_text() == "victim-untouched\n"
    assert os.path.islink(planted) and not os.path.exists(entry_of(where, prof))
    monkeypatch.undo()
    behaves(redirected(where, prof))


def _truncate(lines):
    return lines[: len(lines) // 2]


EDITS = {
    # re-sealed with a correct digest: only the structural check can refuse them
    "fingerprint line removed": lambda ls: [ls[0]] + ls[2:],
    "dep lines removed": lambda ls: [x for x in ls if not x.startswith("dep ")],
    "a dep path made relative": lambda ls: [x.replace(" /", " ", 1) if x.startswith("dep ") else x for x in ls],
    "filter length not a multiple of 8": lambda ls: [x + "00" if x.startswith("filter ") else x for x in ls],
    "filter not hex": lambda ls: [x[:-2] + "zz" if x.startswith("filter ") else x for x in ls],
    "another format": lambda ls: ["sbx-filter-cache 2"] + ls[1:],
    "a fallback number not a number": lambda ls: [x + ",x" if x.startswith("fallback ") else x
                                                  for x in ls],
    "fallback lines after the filter": lambda ls: [x for x in ls if not x.startswith("fallback ")]
    + [x for x in ls if x.startswith("fallback ")],
    "truncated": _truncate,
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_a_damaged_entry_is_recompiled(where, tmp_path, edit):
    prof = profile(tmp_path)
    launcher.compile_profile(prof)
    entry = entry_of(where, prof)
    rewrite(entry, EDITS[edit])
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    assert launcher.compile_profile(prof).program == fresh(prof)
    assert cache.lookup(key(prof), cache.fingerprint()).program == fresh(prof), "the entry was replaced"
    rewrite(entry, EDITS[edit])
    behaves(redirected(where, prof))


@pytest.mark.parametrize("damage", ["a filter byte flipped", "digest line removed", "cut mid-line"])
def test_an_entry_that_fails_its_digest_is_recompiled(where, tmp_path, damage):
    prof = profile(tmp_path)
    launcher.compile_profile(prof)
    entry = entry_of(where, prof)
    text = open(entry).read()
    if damage == "a filter byte flipped":
        i = text.index("\nfilter ") + 8
        text = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]
    elif damage == "digest line removed":
        text = text[:text.index("digest ")]
    else:
        text = text[:len(text) // 2]
    with open(entry, "w") as fh:
        fh.write(text)
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    assert launcher.compile_profile(prof).program == fresh(prof)
    behaves(redirected(where, prof))


def _special(kind: str, entry: str) -> None:
    if kind == "fifo":
        os.mkfifo(entry, 0o600)
    elif kind.startswith("link to "):
        os.symlink(kind.removeprefix("link to "), entry)
    else:                                           # a device node of /dev/zero
        os.mknod(entry, 0o600 | stat.S_IFCHR, os.makedev(1, 5))


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "link to /dev/urandom", "/dev/zero node"])
def test_an_entry_that_is_no_regular_file_neither_hangs_nor_eats_memory(where, tmp_path, root, kind):
    """Read by a real compile in a subprocess (timeout, 1 GiB address space): a miss, and
    the filter compiled from the profile."""
    prof = profile(tmp_path)
    launcher.compile_profile(prof)
    entry = entry_of(where, prof)
    os.unlink(entry)
    _special(kind, entry)
    res = subprocess.run([sys.executable, "-c", READ_ENTRY, where, prof], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr[-800:]
    assert bytes.fromhex(res.stdout.strip()) == fresh(prof)
    assert stat.S_ISREG(os.lstat(entry).st_mode), "replaced by a sound entry"
    assert cache.lookup(key(prof), cache.fingerprint()).program == fresh(prof)
    os.unlink(entry)
    _special(kind, entry)
    behaves(redirected(where, prof, timeout=30))


def test_a_profile_edited_during_compilation(where, tmp_path, monkeypatch):
    """The entry records the bytes that were compiled: an edit made while compiling is not
    hidden behind the old filter; the next run compiles the new contents."""
    import sandbox.policy as policy
    prof = profile(tmp_path, "EXDEV")
    build = policy.build_filter

    def edit_midway(*args, **kw):
        with open(prof, "w") as fh:
            fh.write(PROFILE.format(err="EACCES"))
        return build(*args, **kw)

    monkeypatch.setattr(policy, "build_filter", edit_midway)
    first = launcher.compile_profile(prof).program
    monkeypatch.setattr(policy, "build_filter", build)
    with open(prof, "w") as fh:
        fh.write(PROFILE.format(err="EXDEV"))
    assert first == fresh(prof), "compiled from the bytes that were read"
    with open(prof, "w") as fh:
        fh.write(PROFILE.format(err="EACCES"))
    assert cache.lookup(key(prof), cache.fingerprint()) is None
    assert launcher.compile_profile(prof).program == fresh(prof) != first
    behaves(redirected(where, prof), "EACCES")


def test_a_full_disk_leaves_no_temporary_file(tmp_path):
    """RLIMIT_FSIZE below an entry's size (a real sbx run): the write fails, the temporary
    file is removed, the run is confined as usual; later runs keep working."""
    d = str(tmp_path / "cache" / "sbx")
    os.makedirs(os.path.dirname(d), mode=0o700)
    prof = profile(tmp_path)
    behaves(redirected(d, prof, fsize="512"))
    # beside entries, run/ holds the records sbx status reads (sandbox.running): gone after the run
    assert os.path.isdir(d) and sorted(os.listdir(d)) in ([], [running.DIR]), os.listdir(d)
    assert not os.path.isdir(os.path.join(d, running.DIR)) or not os.listdir(os.path.join(d, running.DIR))
    behaves(redirected(d, prof))
    # with the entry, the run's Landlock plan (sandbox.plan_cache) when it could be kept
    assert sorted(n for n in os.listdir(d) if not n.startswith("plan-")) == \
        sorted([os.path.basename(entry_of(d, prof)), running.DIR])
    assert not [n for n in os.listdir(d) if n.startswith(".tmp")]


# -- the real locations -------------------------------------------------------------------

@pytest.mark.parametrize("home", ["/nonexistent-sbx-cache-test", ""])
def test_home_does_not_decide_where_the_cache_is(tmp_path, root, home):
    """As root with HOME=/nonexistent or HOME='': the run is confined as usual and nothing is
    created where HOME points (the cache is /var/cache/sbx whatever the environment says)."""
    prof = profile(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": ROOT}
    for _ in range(2):                              # a miss, then a hit
        res = subprocess.run([sys.executable, "-m", "sandbox", "run", "--profile", prof, "--",
                              _PROBE[0]], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        behaves(res)
    if home:
        assert not os.path.lexists(home)
    entry = entry_of(cache.location(0), prof)
    assert os.path.isfile(entry)
    os.unlink(entry)
    assert os.listdir(tmp_path) == ["p.yaml"]


@pytest.fixture
def nobody(root):
    """nobody (tests/escape/users.py), with a directory it can read for its profile."""
    from tests.escape.users import Users
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to run as nobody")
    users = Users()
    try:
        need(bool(users.nobody.python), "no Python that nobody can run imports sandbox")
        yield users
    finally:
        users.close()


def test_nobody_does_not_use_a_cache_directory_it_does_not_own(tmp_path, nobody):
    """nobody's /run/user/65534/sbx owned by root, or open to all, holding a valid forged
    entry: not used. (Control: in the sound directory the same forgery is used, which is why
    the command must never be able to write there: test_escape_cache.py.)"""
    user, where, uid = nobody.nobody, nobody.nobody.cache, nobody.nobody.uid
    prof = nobody.profile("cached", PROFILE.format(err="EXDEV"))

    def run():
        out = user.run(user.confined(prof, [_PROBE[0]]), user.env())
        return subprocess.CompletedProcess([], out.status, out.stdout, out.stderr)

    behaves(run())
    entry = entry_of(where, prof)
    assert os.path.isfile(entry) and os.stat(entry).st_uid == uid
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    text = forged(entry)
    with open(entry, "w") as fh:
        fh.write(text)
    mode = os.stat(where).st_mode
    try:
        os.chown(where, 0, 0)
        os.chmod(where, 0o755)                      # readable: only the owner check stands
        behaves(run())
        os.chown(where, uid, -1)
        os.chmod(where, 0o777)
        behaves(run())
        os.chmod(where, stat.S_IMODE(mode))
        assert run().stdout.split() == ["ran"], "control: in nobody's own private directory the forgery is used"
    finally:
        os.chown(where, uid, -1)
        os.chmod(where, stat.S_IMODE(mode))
        os.unlink(entry)


# -- profiles found by name on the search path ($XDG_CONFIG_HOME/sbx/profiles) ---------------

@pytest.fixture
def user_profiles(tmp_path, monkeypatch):
    """A private $XDG_CONFIG_HOME for this test (and the sbx it starts)."""
    d = tmp_path / "xdg" / "sbx" / "profiles"
    d.mkdir(parents=True)
    for p in (d, d.parent, d.parent.parent):
        os.chmod(p, 0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(d.parent.parent))
    return d


def test_a_user_profile_s_bytes_not_its_name_decide_the_entry(where, user_profiles):
    (user_profiles / "app.yaml").write_text(PROFILE.format(err="EXDEV"))
    behaves(redirected(where, "app"), "EXDEV")
    behaves(redirected(where, "app"), "EXDEV")                      # from the cache
    (user_profiles / "app.yaml").write_text(PROFILE.format(err="EACCES"))
    behaves(redirected(where, "app"), "EACCES")


def test_a_user_profile_created_later_shadows_what_a_cached_profile_extends(where, user_profiles):
    (user_profiles / "app.yaml").write_text("name: app\nextends: [default]\nrules: []\n")
    res = redirected(where, "app")
    assert res.returncode == 0 and res.stdout.split() == ["ran"], res.stderr
    assert os.listdir(where), "the first run must have cached its filter"
    # a user "default" now comes first on the path: app extends it, not the built-in
    (user_profiles / "default.yaml").write_text(
        "name: default\nextends: [default]\nrules:\n  - errno(EACCES): getppid\n")
    behaves(redirected(where, "app"), "EACCES")


# -- kept Landlock plans on /proc ----------------------------------------------------------

PROC_PLAN = textwrap.dedent("""\
    import os, subprocess, sys, time
    from sandbox import cache, confine, plan_cache
    cache.location = lambda uid=None: sys.argv[1]
    plan_cache.RACY_NS = 200_000_000
    time.sleep(0.3)                                    # the new /proc's own times settle
    target = "/proc/" + sys.argv[2]
    spec = confine.Spec(fs=[("read", "/proc", False), ("deny", target, False)])
    def paths(rules):
        return sorted(p for p, _r, _d in rules)
    kept = None
    for _ in range(3):
        plan_cache.plan(spec, {}, None, (), [])
        if plan_cache.lookup(spec, {}, None, ())[1] is not None:
            kept = True
            break
        time.sleep(0.3)
    children = []
    while not os.path.exists(target):                  # pids count up from 1 here
        children.append(subprocess.Popen(["sleep", "30"]))
    print("kept" if kept else "never kept")
    print("hit" if plan_cache.lookup(spec, {}, None, ())[1] is not None else "miss")
    read = 1 << 2                                      # LANDLOCK_ACCESS_FS_READ_FILE
    print("denied" if not confine.rights_at(plan_cache.plan(spec, {}, None, (), []), target) & read
          else "granted")
    print(len(confine.plan_rules(spec, {}, None, (), [])) > 1)    # /proc split around it
    for c in children:
        c.kill()
""")


def test_a_denied_proc_entry_that_appears_later_makes_a_kept_plan_miss(tmp_path):
    """/proc gains /proc/PID without its own ctime changing: a plan kept while the
    denied PID did not exist must not be reused once it does (a fresh plan splits
    /proc around it). In a PID namespace of its own, the PIDs to come are known."""
    need(os.geteuid() == 0, "a PID namespace and its /proc need root")
    need(shutil.which("unshare") is not None, "unshare (util-linux) is needed")
    d = tmp_path / "cache" / "sbx"
    os.makedirs(d.parent, mode=0o700)
    script = tmp_path / "proc_plan.py"
    script.write_text(PROC_PLAN)
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(script),
                        str(d), "6"], env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kept", "miss", "denied", "True"], r.stdout + r.stderr
