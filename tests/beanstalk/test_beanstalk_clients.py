"""Two real beanstalkd client libraries, of two languages, against spoold's beanstalk listener
and against a real beanstalkd: Ruby's beaneater (Debian ruby-beaneater) and Node's fivebeans
(npm, installed from package-lock.json by tools/test). Each script prints its session one line
per step without job ids; the test fails if spoold's output differs from beanstalkd's, or if a
script fails. A library that is not installed is a skip (tools/test installs both).
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bs_harness import Beanstalkd, Spoold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_TIMEOUT_S = 60


def ruby_ready():
    if shutil.which("ruby") is None:
        return False
    return subprocess.run(["ruby", "-e", "require 'beaneater'"], capture_output=True).returncode == 0


def node_ready():
    return shutil.which("node") is not None and os.path.isdir(
        os.path.join(HERE, "node_modules", "fivebeans"))


class BeanstalkClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not Beanstalkd.available():
            raise unittest.SkipTest("beanstalkd is not installed")
        cls.spoold = Spoold()
        cls.real = Beanstalkd()

    @classmethod
    def tearDownClass(cls):
        cls.spoold.stop()
        cls.real.stop()

    def session(self, argv, tube):
        outputs = []
        for port in (self.spoold.port, self.real.port):
            run = subprocess.run(argv + [str(port), tube], cwd=HERE, capture_output=True,
                                 text=True, timeout=SCRIPT_TIMEOUT_S)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            outputs.append(run.stdout.splitlines())
        self.assertGreater(len(outputs[1]), 10)
        self.assertEqual(outputs[0], outputs[1], "spoold (first) and beanstalkd differ")
        return outputs[0]

    def test_ruby_beaneater(self):
        if not ruby_ready():
            self.skipTest("ruby and ruby-beaneater are not installed")
        out = self.session(["ruby", "client_beaneater.rb"], "rb-tube")
        self.assertIn("reserve Beaneater::TimedOutError", out)

    def test_node_fivebeans(self):
        if not node_ready():
            self.skipTest("node or tests/beanstalk/node_modules/fivebeans is missing")
        out = self.session(["node", "client_fivebeans.js"], "js-tube(1)")
        self.assertIn("reserve-timeout TIMED_OUT", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
