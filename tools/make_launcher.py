"""Write a fast ``sbx`` launcher: ``python -IS`` with sbx and its venv on sys.path.

A pip console script starts Python with ``site`` (every .pth file of the
environment runs, tens of milliseconds on some machines); sbx needs none of
that, so the launcher isolates the interpreter and adds exactly two paths:
the source tree and the venv's site-packages (for click/yaml on slow paths).
Usage: python tools/make_launcher.py /usr/local/bin/sbx
"""
import os
import sys
import sysconfig

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = sys.argv[1]
script = f"""#!{sys.executable} -IS
import sys
sys.path[:0] = [{root!r}]
sys.path.append({sysconfig.get_paths()["purelib"]!r})
from sandbox.entry import main
sys.exit(main(fast_exit=True))
"""
tmp = target + ".tmp"
with open(tmp, "w") as fh:
    fh.write(script)
os.chmod(tmp, 0o755)
os.replace(tmp, target)
