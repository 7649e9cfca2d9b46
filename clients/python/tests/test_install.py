"""The documented install: `python3 -m venv VENV && VENV/bin/pip install ./clients/python` in a
fresh venv, offline (the in-tree build backend needs nothing from an index); the installed
package then talks to a real spoold from outside the source tree, and so does the
spool-worker script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from server import Spoold

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Creating a venv and installing a pure-Python wheel takes a few seconds; a loaded machine
# may take many more.
INSTALL_TIMEOUT_S = 300

CHECK = """
import sys, spool
assert spool.__file__.startswith(sys.prefix), spool.__file__
with spool.Client(sys.argv[1]) as c:
    job = c.put("installed", b"hi")
    [d] = c.reserve("installed", 1, timeout=5)
    c.ack(d.id, d.lease, b"ok")
    print(c.wait(job.id, 5).result.decode())
"""


class Install(unittest.TestCase):
    def test_pip_install_into_fresh_venv(self) -> None:
        tmp = tempfile.mkdtemp(prefix="spool-venv-")
        self.addCleanup(shutil.rmtree, tmp, True)
        venv = os.path.join(tmp, "venv")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # prove: offline
        made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT_S)
        if made.returncode != 0 and "ensurepip" in made.stdout + made.stderr:
            self.fail("python3 -m venv cannot make a venv with pip: install Debian's "
                      f"python3-venv ({made.stdout}{made.stderr})")
        self.assertEqual(made.returncode, 0, made.stderr)
        pip = subprocess.run([os.path.join(venv, "bin", "pip"), "install", str(PACKAGE_DIR)],
                             capture_output=True, text=True, env=env, cwd=tmp,
                             timeout=INSTALL_TIMEOUT_S)
        self.assertEqual(pip.returncode, 0, pip.stdout + pip.stderr)
        self.assertFalse((PACKAGE_DIR / "build").exists(), "the install wrote into the tree")
        server = Spoold().start()
        try:
            out = subprocess.run([os.path.join(venv, "bin", "python"), "-c", CHECK,
                                  server.address], capture_output=True, text=True, env=env,
                                 cwd=tmp, timeout=60)
            self.assertEqual((out.returncode, out.stdout.strip()), (0, "ok"), out.stderr)
        finally:
            server.close()
        script = subprocess.run([os.path.join(venv, "bin", "spool-worker"), "--help"],
                                capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
        self.assertEqual(script.returncode, 0, script.stderr)
        self.assertIn("module:function", script.stdout)


if __name__ == "__main__":
    unittest.main()
