#!/usr/bin/env python3
"""The dashboard page in a real browser: headless Chromium (Debian's chromium) driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4, so no
npm package and no WebSocket client is needed), or with the argument `firefox` headless Firefox
(Debian's firefox-esr) driven over Marionette (length-prefixed JSON on a TCP port of 127.0.0.1
that Firefox picks and writes into its profile), loads the page from a running spoold started
with a shared secret; the test types the secret into the page's form, waits for the page's own
scripts to render queue names and counts, clicks a dead job's Kick button with a real mouse
event, checks through the JSON API that the job is ready again, and saves a screenshot to
SPOOL_TEST_OUTPUT (default: the current directory). Exit 77 (skipped) only when the browser is
not installed. Environment: SPOOLD, SPOOL_PYTHON_CLIENT."""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from spoold_http import Spoold

import spool

SECRET = "browser-test-secret"


class Browser:
    """What the scenario asks of a browser: eval, click, type_text, navigate, screenshot,
    close; wait_for is shared."""

    def wait_for(self, expression, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:  # the page is still loading: no such element yet
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never showed {what} ({expression})")


class Chromium(Browser):
    """A headless Chromium with one page, spoken to over the DevTools pipe."""

    name = "chromium"

    def __init__(self, path, profile_dir):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # in the child: fd 3 is what Chromium reads, fd 4 what it writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [path, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
             "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={profile_dir}", "--window-size=1440,1000", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w, 3, 4), preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=1440, height=1000,
                  deviceScaleFactor=1, mobile=False)

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def eval(self, expression):
        r = self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def navigate(self, url):
        self.page("Page.navigate", url=url)

    def type_text(self, selector, text):
        self.click(selector)
        self.page("Input.insertText", text=text)

    def click(self, selector):
        """A real mouse click (press and release) at the middle of the element."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        f" if (!e) return null; e.scrollIntoView({{block: 'center'}});"
                        f" const r = e.getBoundingClientRect();"
                        f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        assert box is not None, f"no element {selector}"
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def screenshot(self, path):
        data = self.page("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)



# Marionette's element reference key (the WebDriver element identifier).
WEB_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Firefox(Browser):
    """A headless Firefox spoken to over Marionette: each message is `LENGTH:JSON`; a command
    is [0, id, name, params], its answer [1, id, error, result]. marionette.port 0 in the
    profile lets Firefox pick a free port, which it writes to MarionetteActivePort."""

    name = "firefox"

    def __init__(self, path, profile_dir):
        os.makedirs(profile_dir, exist_ok=True)
        with open(os.path.join(profile_dir, "user.js"), "w") as f:
            for pref, value in (("marionette.port", 0),
                                ("browser.shell.checkDefaultBrowser", False),
                                ("datareporting.policy.dataSubmissionEnabled", False),
                                ("toolkit.telemetry.reportingpolicy.firstRun", False),
                                ("browser.aboutwelcome.enabled", False),
                                ("app.update.disabledForTesting", True)):
                f.write(f"user_pref({json.dumps(pref)}, {json.dumps(value)});\n")
        env = dict(os.environ, MOZ_HEADLESS="1", MOZ_HEADLESS_WIDTH="1440",
                   MOZ_HEADLESS_HEIGHT="1000")
        self.proc = subprocess.Popen(
            [path, "--headless", "--marionette", "--no-remote", "--profile", profile_dir,
             "about:blank"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile_dir, "MarionetteActivePort")
        deadline = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("firefox did not start Marionette")
            time.sleep(0.1)
        port = int(open(port_file).read().strip())
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.next_id = 0
        self._read_message()  # the greeting: applicationType, marionetteProtocol
        self.call("WebDriver:NewSession", capabilities={"alwaysMatch": {}})
        self.call("WebDriver:SetWindowRect", width=1440, height=1000)

    def _read_message(self):
        while b":" not in self.buf:
            self._fill()
        length, rest = self.buf.split(b":", 1)
        while len(rest) < int(length):
            self._fill()
            length, rest = self.buf.split(b":", 1)
        self.buf = rest[int(length):]
        return json.loads(rest[:int(length)])

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("firefox closed the Marionette connection")
        self.buf += chunk

    def call(self, name, **params):
        self.next_id += 1
        msg = json.dumps([0, self.next_id, name, params]).encode()
        self.sock.sendall(str(len(msg)).encode() + b":" + msg)
        while True:
            reply = self._read_message()
            if isinstance(reply, list) and reply[0] == 1 and reply[1] == self.next_id:
                if reply[2] is not None:
                    raise RuntimeError(f"{name}: {reply[2]}")
                return reply[3]

    def eval(self, expression):
        return self.call("WebDriver:ExecuteScript", script=f"return ({expression});",
                         args=[])["value"]

    def navigate(self, url):
        self.call("WebDriver:Navigate", url=url)

    def _element(self, selector):
        return self.call("WebDriver:FindElement", using="css selector",
                         value=selector)["value"][WEB_ELEMENT]

    def click(self, selector):
        """WebDriver's element click: scrolled into view, a real mouse click at its middle.
        The page redraws its tables every second, so the element found may be replaced
        before the click lands (stale element reference): find it again, as a person's
        next click would hit the redrawn one."""
        for attempt in range(5):
            try:
                self.call("WebDriver:ElementClick", id=self._element(selector))
                return
            except RuntimeError as e:
                if "stale element reference" not in str(e) or attempt == 4:
                    raise

    def type_text(self, selector, text):
        self.call("WebDriver:ElementSendKeys", id=self._element(selector), text=text)

    def screenshot(self, path):
        data = self.call("WebDriver:TakeScreenshot", full=False)["value"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Marionette:Quit")
        except Exception:
            pass
        self.sock.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def workload(addr, stop):
    """Puts and acks for the rate charts while the page is open."""
    with spool.Client(addr, auth=SECRET) as c:
        while not stop.is_set():
            for _ in range(20):
                c.put("thumbnails", "img")
            for d in c.reserve("thumbnails", count=15):
                c.ack(d.id, d.lease)
            time.sleep(0.1)


BROWSERS = {
    "chromium": (Chromium, ("CHROMIUM", "chromium", "chromium-browser"), "chromium"),
    "firefox": (Firefox, ("FIREFOX", "firefox-esr", "firefox"), "firefox-esr"),
}


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "chromium"
    kind, (variable, *names), package = BROWSERS[which]
    path = os.environ.get(variable) or next(filter(None, map(shutil.which, names)), None)
    if path is None:
        print(f"SKIP: {which} is not installed (Debian package {package})")
        return 77
    shot_prefix = "dashboard" if which == "chromium" else f"dashboard-{which}"
    out_dir = os.environ.get("SPOOL_TEST_OUTPUT", os.getcwd())
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="spool-browser-")
    secret_file = os.path.join(work, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    s = Spoold("--auth-file", secret_file)
    stop = threading.Event()
    browser = None
    loader = None
    try:
        c = spool.Client(s.addr, auth=SECRET)  # open to the end: it holds a lease
        if True:
            for i in range(7):
                c.put("emails", f"mail {i}")
            for i in range(3):
                c.put("reports", f"report {i}")
            c.put("webhooks", "hook", delay_ms=3_600_000)
            d = c.reserve_one("reports")
            c.bury(d.id, d.lease, "pdf renderer crashed: out of memory at page 412")
            dead_id = d.id
            leased = c.reserve_one("emails")  # one reserved job
        loader = threading.Thread(target=workload, args=(s.addr, stop), daemon=True)
        loader.start()
        browser = kind(path, os.path.join(work, "profile"))
        browser.navigate(f"http://{s.http_addr}/")
        # The page asks for the secret once (401 from the API), then shows the data.
        browser.wait_for("getComputedStyle(document.getElementById('auth')).display === 'block'",
                         "the secret form")
        browser.type_text("#token", SECRET)
        browser.click("#authform button")
        ready = browser.wait_for(
            "document.querySelector('tr[data-queue=\"emails\"] td.ready')?.textContent === '6'"
            " && document.querySelector('tr[data-queue=\"reports\"] td.dead')?.textContent",
            "the emails and reports rows")
        assert ready == "1", ready
        text = browser.eval("document.body.innerText")
        for expected in ("emails", "reports", "webhooks", "thumbnails",
                         "pdf renderer crashed: out of memory at page 412", "commit p50 / p99"):
            assert expected.lower() in text.lower(), f"{expected!r} is not on the page"
        browser.wait_for(f"!!document.querySelector('button.kick-job[data-id=\"{dead_id}\"]')",
                         "the dead job's kick button")
        # Let the charts gather a few seconds of rates, then look at the page as a user would.
        browser.wait_for("parseFloat(document.getElementById('putnow').textContent) > 0",
                         "a put rate")
        time.sleep(3)
        shot = os.path.join(out_dir, f"{shot_prefix}.png")
        browser.screenshot(shot)
        print(f"screenshot: {shot}")
        # Kick from the page: the server's job is ready again and the row disappears.
        browser.click(f"button.kick-job[data-id=\"{dead_id}\"]")
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline:
            state = s.json("GET", f"/api/v1/jobs/{dead_id}", token=SECRET)["state"]
            if state == "ready":
                break
            time.sleep(0.1)
        assert state == "ready", f"job {dead_id} is {state} after the kick"
        browser.wait_for(f"!document.querySelector('tr[data-job=\"{dead_id}\"]')"
                         " && document.querySelector('tr[data-queue=\"reports\"] td.dead')"
                         "?.textContent === '0'", "the kicked job leaving the dead list")
        browser.screenshot(os.path.join(out_dir, f"{shot_prefix}-after-kick.png"))
        assert leased is not None
        print(f"ok ({which}): page rendered, secret asked once, kick from the page applied")
        return 0
    except Exception:
        print(s.log(), file=sys.stderr)
        if browser is not None:
            try:
                print("page text:\n" + str(browser.eval("document.body.innerText")),
                      file=sys.stderr)
                browser.screenshot(os.path.join(out_dir, f"{shot_prefix}-failed.png"))
            except Exception as e:  # the browser itself may be what failed
                print(f"no page text: {e}", file=sys.stderr)
        raise
    finally:
        stop.set()
        if loader is not None:
            loader.join(timeout=30)  # before spoold stops under it
        if browser is not None:
            browser.close()
        rc = s.stop()
        s.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        if rc != 0:
            print(f"spoold exited {rc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
