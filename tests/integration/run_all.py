#!/usr/bin/python3
"""Runs every tests/integration/test_*.py in its own process and sums the results.

    REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/run_all.py [test_read ...]

Prints each file's output, then one closing line
"integration: N passed, N failed, N skipped"; exits non-zero if any file failed.
"""

import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LINE = re.compile(r"^\S+: (\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


def main(argv):
    files = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    if argv:
        files = [f for f in files if os.path.basename(f)[:-3] in argv]
    passed = failed = skipped = 0
    bad_files = []
    for path in files:
        start = time.monotonic()
        res = subprocess.run([sys.executable, path], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(res.stdout)
        m = LINE.findall(res.stdout)
        if m:
            p, f, s = map(int, m[-1])
        else:
            p, f, s = 0, 1, 0  # crashed before its closing line
        if res.returncode != 0 and f == 0:
            f = 1
        passed, failed, skipped = passed + p, failed + f, skipped + s
        if res.returncode != 0:
            bad_files.append(os.path.basename(path))
        print("[%s: exit %d in %.1fs]" % (os.path.basename(path), res.returncode,
                                          time.monotonic() - start), flush=True)
    if bad_files:
        print("failed files: " + " ".join(bad_files))
    print("integration: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if bad_files or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
