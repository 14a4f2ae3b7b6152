"""What particular profiles claim: notify, argument widths, i386 multiplexers, no program from memory.

Classes 7-10 of the escape suite, with test profiles where the claim is
about a profile feature rather than a built-in profile:
- notify: a profile that uses `notify` denies seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER),
  or the command's own listener (the newest filter's) would answer its calls;
  under the built-ins a listener of the command's own cannot answer a call the
  sbx filter denies (an errno outranks a notification);
- argument widths: clone's flags are cut to 32 bits and a mode to 16 by the
  kernel, so garbage above them must not slip past a rule;
- i386: with `arches: [native, i386]`, socketcall and ipc from `int 0x80` are no
  way around web's socket rules or python's ban on System V IPC;
- web: no executable memfd, so no program run from memory through execve.
Each attempt works unconfined (as root and as nobody, except a packet socket,
which needs CAP_NET_RAW) and is contained for both users.
"""
import pytest

from tests.escape.harness import Attack, builtin_profiles, judge, run_many
from tests.escape.users import USERS, judge_control

PROFILES = builtin_profiles()
NOTIFY = "name: notify-getppid\nextends: [default]\nrules:\n  - notify: getppid\n"
CLONE_WIDTH = ("name: clone-width\nextends: [default]\nrules:\n  - errno(EPERM): clone\n"
               "    when: [\"arg0 == SIGCHLD\"]\n")
WEB_I386 = "name: web-i386\nextends: [web]\narches: [native, i386]\n"
PYTHON_I386 = "name: python-i386\nextends: [python]\narches: [native, i386]\n"

ATTACKS = {a.name: a for a in [
    Attack("seccomp-new-listener", "seccomp(SET_MODE_FILTER, NEW_LISTENER) under a profile that uses notify",
           program="escape", expect=("EPERM",)),
    Attack("self-listener-answer", "a listener of the command's own answers 'continue' to kcmp, which the "
           "profile denies", program="escape", expect=("EPERM",)),
    Attack("clone-sigchld-high", "clone(SIGCHLD | 1<<40) under `errno(EPERM): clone when arg0 == SIGCHLD`",
           program="escape", expect=("EPERM",)),
    Attack("fchmodat-bit16-setuid", "fchmodat(file, 1<<16 | 04755): the kernel reads 16 bits of the mode",
           program="escape", expect=("EPERM",)),
    Attack("chmod-bit16-setuid", "chmod(file, 1<<16 | 04755)", program="escape", expect=("EPERM",)),
    Attack("i386-socketcall-packet", "int 0x80 socketcall(SYS_SOCKET, AF_PACKET, SOCK_RAW) under web with "
           "i386 (EAFNOSUPPORT: web's answer, not the missing CAP_NET_RAW's EPERM)", program="escape",
           expect=("EAFNOSUPPORT",), unprivileged="needs CAP_NET_RAW"),
    Attack("i386-ipc-shmget", "int 0x80 ipc(SHMGET) under python (no System V IPC) with i386",
           program="escape", expect=("ENOSYS",)),
    Attack("memfd-exec", "memfd_create without MFD_NOEXEC_SEAL, write an ELF, execve /proc/self/fd/N",
           program="escape", expect=("EPERM",)),
]}
POSITIVE = Attack("i386-getpid", "int 0x80 getpid runs (the profile does enable i386)", program="escape")

# the attempts per profile; built-in names, or test profile keys
PLAN = {p: ["self-listener-answer", "fchmodat-bit16-setuid", "chmod-bit16-setuid"]
        + (["memfd-exec"] if p == "web" else []) for p in PROFILES}
PLAN.update({"notify-getppid": ["seccomp-new-listener", "self-listener-answer"],
             "clone-width": ["clone-sigchld-high"],
             "web-i386": ["i386-socketcall-packet", "i386-getpid"],
             "python-i386": ["i386-ipc-shmget", "i386-getpid"]})


def _cell(ws, user, profile, names):
    suid = user.mkdtemp("suid-") + "/file"
    with open(suid, "w") as fh:
        fh.write("#!/bin/sh\n")
    user.give(suid, 0o755)
    return user.chain(ws.escape, profile, names, user.env(SUIDFILE=suid))


@pytest.fixture(scope="module")
def cells(workspace, users):
    paths = {"notify-getppid": users.profile("notify-getppid", NOTIFY),
             "clone-width": users.profile("clone-width", CLONE_WIDTH),
             "web-i386": users.profile("web-i386", WEB_I386),
             "python-i386": users.profile("python-i386", PYTHON_I386)}
    jobs = {(p, u): (workspace, users[u], paths.get(p, p), names) for u in USERS for p, names in PLAN.items()}
    jobs.update({(None, u): (workspace, users[u], None, [*ATTACKS, POSITIVE.name]) for u in USERS})
    return run_many(jobs, _cell)


@pytest.mark.parametrize("user, attack", [pytest.param(u, a, id=f"{u}:{a.name}") for u in USERS
                                          for a in [*ATTACKS.values(), POSITIVE]])
def test_unconfined_attack_works(cells, users, user, attack):
    verdict = judge_control(attack, cells[(None, user)][attack.name], users[user])
    assert verdict is None, f"{attack.doc}: {verdict}"


@pytest.mark.parametrize("user, profile, attack", [
    pytest.param(u, p, ATTACKS[n], id=f"{u}:{p}:{n}") for u in USERS for p, names in PLAN.items()
    for n in names if n in ATTACKS])
def test_attack_is_contained(cells, user, profile, attack):
    verdict = judge(attack, cells[(profile, user)][attack.name])
    assert verdict is None, f"{user}, {profile}: {attack.doc}: {verdict}"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", ["web-i386", "python-i386"])
def test_i386_profiles_run_i386_calls(cells, user, profile):
    """Positive control: the i386 test profiles do let int 0x80 calls run, so the denials
    above are the multiplexer guards' doing, not bad_arch."""
    out = cells[(profile, user)]["i386-getpid"]
    assert out.status == 0 and out.result()[0] == "ESCAPED", out.describe()
