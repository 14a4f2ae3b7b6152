"""Write the installed ``sbx`` launcher: the system Python, isolated (``-IS``), with sbx's venv on sys.path.

A pip console script starts Python with ``site`` (every .pth file of the
environment runs, tens of milliseconds on some machines); sbx needs none of
that, so the launcher isolates the interpreter and adds exactly one path: the
site-packages of the venv ``make install`` made, which holds sbx itself (a
copy, not the source tree) and its dependencies.

The interpreter is the system one (/usr/bin/python3), never the Python that
happened to run ``make``: a pyenv or venv Python under a home directory
(often mode 0700) cannot be started by other users, and the launcher must run
for every user of the machine.

Usage: python tools/make_launcher.py TARGET --python /usr/bin/python3 --venv DIR [--destdir D]
TARGET and DIR are where the files are written (below D when staging with
DESTDIR); the launcher names DIR without D, where it will be found once installed.
"""
import argparse
import glob
import os

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("target")
parser.add_argument("--python", required=True, help="the interpreter the venv was made from")
parser.add_argument("--venv", required=True, help="the venv with sbx installed (below --destdir)")
parser.add_argument("--destdir", default="", help="staging root that is not part of the final paths")
args = parser.parse_args()

found = glob.glob(os.path.join(args.venv, "lib", "python3*", "site-packages"))
if len(found) != 1:
    raise SystemExit(f"make_launcher: expected one site-packages in {args.venv}, found {found}")
site = os.path.abspath(found[0])
destdir = os.path.abspath(args.destdir) if args.destdir else ""
if destdir and site.startswith(destdir + "/"):
    site = site[len(destdir):]
script = f"""#!{args.python} -IS
import sys
sys.path.append({site!r})
from sandbox.entry import main
sys.exit(main(fast_exit=True))
"""
tmp = args.target + ".tmp"
with open(tmp, "w") as fh:
    fh.write(script)
os.chmod(tmp, 0o755)
os.replace(tmp, args.target)
