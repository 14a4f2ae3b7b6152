"""no_new_privs under sbx: a setuid-root program started by an unprivileged user gains nothing.

The test user is ``nobody`` (the ``users`` fixture: setpriv, its own home). A
control first shows that the setuid copy does raise nobody's euid to 0 outside
the sandbox; under every profile the same exec must leave the euid at
nobody's and show NoNewPrivs: 1.
"""
import os
import shutil

import pytest

from tests.conftest import need
from tests.escape.harness import builtin_profiles

PROFILES = builtin_profiles()


@pytest.fixture(scope="module")
def suid(workspace, users):
    """A setuid-root copy of the attack program, and nobody."""
    probe = workspace.dir / "euid-probe"
    shutil.copy(workspace.attack, probe)
    os.chown(probe, 0, 0)
    os.chmod(probe, 0o4755)
    return probe, users.nobody


def test_setuid_copy_works_unconfined(suid):
    """Control: unconfined, nobody running the setuid-root copy gets euid 0 (the attack is real)."""
    probe, nobody = suid
    out = nobody.run(nobody.direct([str(probe), "euid"]), nobody.env())
    need(out.stdout.split()[:2] == ["EUID", "0"],
         f"the setuid bit has no effect here (nosuid mount?): {out.describe()}")


@pytest.mark.parametrize("profile", PROFILES)
def test_setuid_exec_gains_no_privileges(suid, profile):
    """nobody runs `sbx run --profile P -- setuid-root-probe`: euid stays nobody, NoNewPrivs is 1."""
    probe, nobody = suid
    out = nobody.run(nobody.confined(profile, [str(probe), "euid"]), nobody.env())
    assert out.status == 0, out.describe()
    assert out.stdout.split() == ["EUID", str(nobody.uid), "NNP", "1"], out.describe()
