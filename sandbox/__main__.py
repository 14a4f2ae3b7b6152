import os
import sys

# `python -m sandbox` puts the working directory first on sys.path, and a command
# sbx confined may write there: a struct.py or _ctypes.py it leaves would be what
# the next sbx imports, unconfined. Not looked up there, unless this package is
# there itself (a checkout run from its top: sbx keeps that unwritable). os and
# sys are loaded with the interpreter, before any path is searched. (The package
# itself was looked up there before this runs: `python -P -m sandbox`, or the
# installed sbx, for a directory a command may write; docs/profiles.md.)
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.realpath(os.getcwd()) != \
        os.path.realpath(_here):
    del sys.path[0]

from .entry import main  # noqa: E402 - after the path is made safe

sys.exit(main())
