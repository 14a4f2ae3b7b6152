"""Poisoning the filter cache from inside the sandbox: a later run must still install the right filter.

Class 4 of the escape suite. sbx keeps compiled filters in /var/cache/sbx
(root) or /run/user/UID/sbx (everyone else), where the confined command's own
user could write them. The unconfined control shows why that matters: the
same program writes an entry in the real format with a correct digest (the
format of sandbox/cache.py, computed here) and the next `sbx run` of that
profile really installs the forged allow-all filter. Confined, under every
built-in profile and under a test profile that may write everywhere (so only
sbx's own protection stands in the way), every change to the cache fails: the
entry's bytes are unchanged afterwards and the next run still denies what the
profile denies. Confined attempts write the entry's own bytes, so even an
escape would leave a valid entry behind; directory renames aim at a non-empty
directory, which the kernel refuses (ENOTEMPTY) once past the permission checks.
"""
import hashlib
import os
import shutil
import struct

import pytest

from tests.escape.attacks import BY_NAME as SYSCALL_ATTACKS
from tests.escape.harness import Attack, builtin_profiles, judge, run_many
from tests.escape.users import USERS, judge_control

PROFILES = builtin_profiles()
DENIED = ("EACCES", "EXDEV", "EPERM")
WRITE_ALL = "name: write-all\nextends: [default]\nfilesystem:\n  inherit: false\n  read: [/]\n" \
            "  write: [/]\n  exec: [/]\n"
ALLOW_ALL = struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000)      # BPF_RET|BPF_K SECCOMP_RET_ALLOW
PARENT_RENAME = "nobody cannot rename its runtime directory: /run/user is root's, mode 0755"

# In the order the unconfined control runs them: the entry is removed, then
# replaced by the forgery, then overwritten with it.
ATTACKS = [
    Attack("cache-create", "create a file in the cache directory", program="escape", expect=DENIED),
    Attack("cache-symlink", "create a symbolic link in the cache directory", program="escape", expect=DENIED),
    Attack("cache-truncate", "truncate an entry (to its own size)", program="escape", expect=DENIED),
    Attack("cache-rename", "rename an entry within the cache directory", program="escape", expect=DENIED),
    Attack("cache-link-out", "hard-link an entry into $TMPDIR, where it could be written", program="escape",
           expect=DENIED),
    Attack("cache-replace-dir", "rename another directory over the cache directory", program="escape",
           expect=DENIED, kernel=("ENOTEMPTY",)),
    Attack("cache-move-dir", "rename the cache directory away", program="escape", expect=DENIED,
           kernel=("ENOTEMPTY",)),
    Attack("cache-move-parent", "rename the cache directory's parent away", program="escape", expect=DENIED,
           kernel=("ENOTEMPTY",), unprivileged=PARENT_RENAME),
    Attack("cache-remove", "unlink an entry", program="escape", expect=DENIED),
    Attack("cache-replace", "rename a file of one's own over an entry", program="escape", expect=DENIED),
    Attack("cache-write", "overwrite an entry", program="escape", expect=DENIED),
]
LIMIT = "cache-chmod-same"     # Landlock has no right for file modes


def entry_path(user, profile: str) -> str:
    from sandbox import cache
    from sandbox.launcher import profile_path
    return os.path.join(user.cache, cache._entry_name(f"{profile_path(profile)}\0enforce\0x86_64"))


def forge(text: str, program: bytes) -> str:
    """*text* (an entry) with its filter replaced by *program* and a matching digest."""
    lines = text.split("\n")[:-1]
    assert lines[-2].startswith("filter ") and lines[-1].startswith("digest "), text[:200]
    body = lines[:-2] + [f"filter {program.hex()}"]
    digest = hashlib.sha256("".join(line + "\n" for line in body).encode()).hexdigest()
    return "".join(line + "\n" for line in body + [f"digest {digest}"])


def _file(user, name: str, data: bytes) -> str:
    path = os.path.join(user.tmp, name)
    with open(path, "wb") as fh:
        fh.write(data)
    user.give(path, 0o600)
    return path


def _denied_later(ws, user, profile):
    """A later run of *profile*: unshare(CLONE_NEWUSER), which every profile here denies."""
    return user.run(user.confined(profile, [str(ws.attack), "unshare-newuser"]), user.env())


def _cell(ws, user, profile, poison):
    """Confined (profile) or control (None: the poison profile, unconfined) cell."""
    target = profile or poison
    tag = os.path.basename(target).removesuffix(".yaml")
    first = user.run(user.confined(target, [str(ws.escape), "noop"]), user.env())
    entry = entry_path(user, target)
    if first.status != 0 or not os.path.isfile(entry):
        return {"setup": f"no cache entry after a run of {target}: {first.describe()}"}
    with open(entry, "rb") as fh:
        genuine = fh.read()
    content = genuine if profile else forge(genuine.decode(), ALLOW_ALL).encode()
    nonempty = os.path.join(user.tmp, "nonempty")
    os.makedirs(os.path.join(nonempty, "keep"), exist_ok=True)
    user.give(nonempty, 0o700)
    empty = user.mkdtemp(f"empty-{tag}-")
    env = user.env(CACHE=user.cache, CACHE_ENTRY=os.path.basename(entry),
                   FORGED=_file(user, f"forged-{tag}", content),
                   REPLACEMENT=_file(user, f"replacement-{tag}", content), EMPTY=empty, NONEMPTY=nonempty)
    mode = os.stat(user.cache).st_mode
    try:
        results = user.chain(ws.escape, profile, [a.name for a in ATTACKS] + [LIMIT], env)
        with open(entry, "rb") as fh:
            after = fh.read()
        stray = [n for n in os.listdir(user.cache) if "sbx-escape" in n]
        later = _denied_later(ws, user, target)
        return {"results": results, "changed": after != genuine, "forged": after == content,
                "stray": stray, "mode": os.stat(user.cache).st_mode == mode, "later": later}
    finally:
        shutil.rmtree(empty, ignore_errors=True)
        if profile is None and os.path.lexists(entry):
            os.unlink(entry)


@pytest.fixture(scope="module")
def cells(workspace, users):
    poison = users.profile("poison", "name: poison\nextends: [default]\n")
    write_all = users.profile("write-all", WRITE_ALL)
    jobs = {(p, u): (workspace, users[u], p, poison) for u in USERS for p in [None, *PROFILES, write_all]}
    done = run_many(jobs, _cell)
    return {(os.path.basename(p).removesuffix(".yaml") if p else p, u): v for (p, u), v in done.items()}


CONFINED = [*PROFILES, "write-all"]


@pytest.mark.parametrize("user, attack", [pytest.param(u, a, id=f"{u}:{a.name}") for u in USERS
                                          for a in ATTACKS])
def test_unconfined_attack_works(cells, users, user, attack):
    """Control: unconfined, the command's own user may change its cache."""
    cell = cells[(None, user)]
    assert "setup" not in cell, cell.get("setup")
    verdict = judge_control(attack, cell["results"][attack.name], users[user])
    assert verdict is None, f"{attack.doc}: {verdict}"


@pytest.mark.parametrize("user", USERS)
def test_unconfined_poisoning_installs_the_forged_filter(cells, user):
    """Control: after the unconfined program wrote a forged entry (allow-all, correct digest),
    the next `sbx run` of that profile installs it: unshare(CLONE_NEWUSER) succeeds."""
    cell = cells[(None, user)]
    assert "setup" not in cell, cell.get("setup")
    assert cell["forged"], "the forged entry is not in place"
    later = cell["later"]
    assert later.result()[0] == "ESCAPED", f"the forged filter was not installed: {later.describe()}"


@pytest.mark.parametrize("user, profile, attack", [pytest.param(u, p, a, id=f"{u}:{p}:{a.name}")
                                                   for u in USERS for p in CONFINED for a in ATTACKS])
def test_attack_is_contained(cells, user, profile, attack):
    cell = cells[(profile, user)]
    assert "setup" not in cell, cell.get("setup")
    verdict = judge(attack, cell["results"][attack.name])
    assert verdict is None, f"{user}, {profile}: {attack.doc}: {verdict}"


@pytest.mark.parametrize("user, profile", [pytest.param(u, p, id=f"{u}:{p}") for u in USERS
                                           for p in CONFINED])
def test_cache_intact_and_later_run_installs_the_right_filter(cells, user, profile):
    """After every attempt: the entry's bytes, the directory's mode and contents are as
    before, and the next run of the profile still denies unshare(CLONE_NEWUSER)."""
    cell = cells[(profile, user)]
    assert "setup" not in cell, cell.get("setup")
    assert not cell["changed"] and not cell["stray"] and cell["mode"], cell
    verdict = judge(SYSCALL_ATTACKS["unshare-newuser"], cell["later"])
    assert verdict is None, f"{user}, {profile}: a later run: {verdict}"


@pytest.mark.parametrize("user, profile", [pytest.param(u, p, id=f"{u}:{p}") for u in USERS
                                           for p in CONFINED])
def test_documented_limit_cache_mode_can_be_changed(cells, user, profile):
    """Limit: Landlock has no right for file modes, so a profile that allows chmod lets the
    command chmod the cache directory (shown with its own mode). sbx does not trust a cache
    directory or entry that others may access (tests/kernel/test_cache.py); minimal allows no
    chmod at all."""
    out = cell_out = cells[(profile, user)]["results"][LIMIT]
    kind, err = cell_out.result()
    if profile == "minimal":
        assert kind == "BLOCKED" and err == "EPERM", out.describe()
    else:
        assert kind == "ESCAPED", out.describe()
