"""Load HTML pages in headless Chromium and report their errors, over the DevTools protocol.

    python scripts/browser_check.py SITE_DIR [--png-dir DIR] [--chromium PATH]

Every ``*.html`` under SITE_DIR (recursively, sorted) is opened in one headless Chromium; console
errors and failed assertions, uncaught exceptions, error-level log entries and failed loads are
reported, one line per page. With --png-dir a full-page screenshot of every page is written too.
Exit status: 1 if any page had an error, 3 if no chromium was found, 0 otherwise.

Standard library only. The browser is driven through ``--remote-debugging-pipe``: it reads
NUL-terminated JSON messages from its fd 3 and writes them to its fd 4, so no port is opened and
nothing here touches the network. It is started with ``os.posix_spawn``, whose file actions dup2
our pipe ends onto 3 and 4 in the child only -- subprocess.Popen cannot renumber descriptors
other than 0-2 without a preexec_fn, which is unsafe with threads.
"""

# No `from __future__ import annotations`: with it, @dataclass looks its module up in sys.modules,
# which fails when a test loads this file with importlib without registering it there.
import argparse
import base64
import collections
import json
import logging
import math
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("browser_check")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

# The browser's end of the DevTools pipe, fixed by --remote-debugging-pipe.
BROWSER_READ_FD = 3
BROWSER_WRITE_FD = 4

# Our own copies of the pipe ends are moved at or above this number before spawning, so that no
# source descriptor of the child's dup2 actions can be 3 or 4 and be clobbered by the other one.
_SPARE_FD_MIN = 10

_STDERR_TAIL_LINES = 40
_EOF = object()  # put on the message queue by the reader thread when the browser closes fd 4


def _split_stream(fd: int, sep: bytes, chunk: int) -> Iterator[bytes]:
    """The records a pipe carries, separated by `sep`, until the writer closes it; an
    unterminated rest is yielded last."""
    pending = b""
    while True:
        data = os.read(fd, chunk)
        if not data:
            break
        pending += data
        *complete, pending = pending.split(sep)
        yield from complete
    if pending:
        yield pending


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser binary: ``explicit`` if given (a path or a name on PATH), else the first found
    of /usr/bin/chromium, chromium, chromium-browser, google-chrome; None when there is none."""
    for name in [explicit] if explicit else CHROMIUM_CANDIDATES:
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@dataclass
class PageResult:
    url: str
    errors: list[str] = field(default_factory=list)
    value: object = None


def _remote_object_text(obj: dict[str, Any]) -> str:
    """One console argument as the console would show it, without another protocol round trip."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    if "unserializableValue" in obj:
        return str(obj["unserializableValue"])
    return str(obj.get("description") or obj.get("type", "?"))


def _one_line(text: str) -> str:
    # Errors are logged one per line; stack traces and multi-line messages keep their first line.
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.strip()


def _where(url: str | None, line: int | None, column: int | None = None) -> str:
    # Protocol line and column numbers are 0-based; people count from 1.
    if not url:
        return ""
    where = url
    if line is not None:
        where += f":{line + 1}"
        if column is not None:
            where += f":{column + 1}"
    return f" ({where})"


def _first_frame(stack: dict[str, Any] | None) -> tuple[str | None, int | None, int | None]:
    frames = (stack or {}).get("callFrames") or []
    if not frames:
        return None, None, None
    return frames[0].get("url"), frames[0].get("lineNumber"), frames[0].get("columnNumber")


def _exception_text(details: dict[str, Any]) -> str:
    exc = details.get("exception") or {}
    # description carries "Error: message\n    at ..." for Error objects; text is just "Uncaught".
    message = _one_line(str(exc.get("description") or exc.get("value") or ""))
    text = details.get("text", "exception")
    body = f"{text}: {message}" if message and message not in text else text
    url, line, col = _first_frame(details.get("stackTrace"))
    if url is None:
        url, line, col = details.get("url"), details.get("lineNumber"), details.get("columnNumber")
    return f"{body}{_where(url, line, col)}"


def page_errors(events: list[dict[str, Any]]) -> list[str]:
    """The error lines of one page from its session's events, in the order they happened."""
    request_urls: dict[str, str] = {}
    failed_urls: set[str] = set()
    errors: list[tuple[str, str | None]] = []  # (line, url of a network log entry to dedupe)
    for msg in events:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            request_urls[params["requestId"]] = params["request"]["url"]
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_remote_object_text(a) for a in params.get("args", []))
            if params["type"] == "assert":
                text = f"Assertion failed: {text}" if text else "Assertion failed"
            url, line, col = _first_frame(params.get("stackTrace"))
            errors.append((f"console.{params['type']}: {_one_line(text)}{_where(url, line, col)}", None))
        elif method == "Runtime.exceptionThrown":
            errors.append((_exception_text(params.get("exceptionDetails", {})), None))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            key = entry.get("url") if entry.get("source") == "network" else None
            line = f"log {entry.get('source', '?')}: {_one_line(entry.get('text', ''))}"
            errors.append((line + _where(entry.get("url"), entry.get("lineNumber")), key))
        elif method == "Network.loadingFailed":
            # A cancelled request is one the page (or our closing it) abandoned, not a broken one.
            if params.get("canceled"):
                continue
            url = request_urls.get(params["requestId"], f"request {params['requestId']}")
            reason = params.get("errorText", "failed")
            if params.get("blockedReason"):
                reason += f" (blocked: {params['blockedReason']})"
            failed_urls.add(url)
            errors.append((f"failed to load {url}: {reason}", None))
    # Chromium reports a failed subresource twice: Network.loadingFailed and a network-source
    # "Failed to load resource" log entry. Keep the one that names the URL and the reason.
    return [line for line, key in errors if key is None or key not in failed_urls]


class Browser:
    """One headless Chromium, started on ``__enter__`` and reused for every page.

    Use it as a context manager: the browser, its child processes and its profile directory are
    gone when the ``with`` block ends, whether it ended normally or by an exception.
    """

    def __init__(self, chromium: str | None = None, width: int = 1400, height: int = 1000, timeout_s: float = 60.0):
        found = find_chromium(chromium)
        if found is None:
            raise RuntimeError(f"chromium not found (looked for {chromium or ', '.join(CHROMIUM_CANDIDATES)})")
        self.chromium = found
        self.width = width
        self.height = height
        self.timeout_s = timeout_s
        self._pid: int | None = None
        self._returncode: int | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._to_browser: int | None = None  # our write end; the browser reads it as fd 3
        self._from_browser: int | None = None  # our read end; the browser writes fd 4
        self._stderr: int | None = None
        self._messages: queue.Queue[object] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._write_lock = threading.Lock()
        self._next_id = 0
        self._responses: dict[int, dict[str, Any]] = {}
        self._waiting: set[int] = set()  # ids whose replies are still wanted; late ones are dropped
        self._events: dict[str, list[dict[str, Any]]] = {}  # by session id, for attached pages only
        self._dead = False

    # -- process lifetime -------------------------------------------------------------------

    def __enter__(self) -> "Browser":
        try:
            self._start()
            # The first answer is also the readiness check: the pipe is served once startup is done.
            version = self._call("Browser.getVersion", what="the browser to start (Browser.getVersion)")
            log.debug("started %s (pid %s)", version.get("product"), self._pid)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="browser-check-")
        argv = [
            self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
            f"--window-size={self.width},{self.height}",
            # No host name resolves: a page that tries to load anything from a network fails the
            # load, which is reported as its error (the site must open from disk alone).
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ]
        # os.pipe() descriptors are close-on-exec, so only what the file actions dup2 reaches the
        # child; dup2 clears close-on-exec on the target. Moving the child's ends above 3/4 first
        # makes the two dup2 actions independent of which numbers os.pipe happened to return.
        child_read, to_browser = os.pipe()
        from_browser, child_write = os.pipe()
        err_read, err_write = os.pipe()
        spare_read = spare_write = -1
        try:
            spare_read = _dup_high(child_read)
            spare_write = _dup_high(child_write)
            devnull = os.open(os.devnull, os.O_RDONLY)
            try:
                self._pid = os.posix_spawn(
                    self.chromium, argv, dict(os.environ),
                    file_actions=[
                        *_close_inherited_actions(),
                        (os.POSIX_SPAWN_DUP2, devnull, 0),
                        (os.POSIX_SPAWN_DUP2, err_write, 1),  # chromium's stdout is also noise for the tail
                        (os.POSIX_SPAWN_DUP2, err_write, 2),
                        (os.POSIX_SPAWN_DUP2, spare_read, BROWSER_READ_FD),
                        (os.POSIX_SPAWN_DUP2, spare_write, BROWSER_WRITE_FD),
                    ],
                    # Its own session and process group, so close() can kill the renderers and
                    # helpers along with the browser and nothing outlives us.
                    setsid=True,
                )
            finally:
                os.close(devnull)
        except BaseException:
            # Not started: our ends of the pipes have no reader thread to close them later.
            for fd in (to_browser, from_browser, err_read):
                os.close(fd)
            raise
        finally:
            # The child has its copies now; holding ours open would hide EOF when the browser dies.
            for fd in (child_read, child_write, err_write, spare_read, spare_write):
                if fd >= 0:
                    os.close(fd)
        self._to_browser, self._from_browser, self._stderr = to_browser, from_browser, err_read
        log.debug("spawned %s as pid %d", " ".join(argv), self._pid)
        for target, name in ((self._read_messages, "cdp-reader"), (self._read_stderr, "cdp-stderr")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop the browser (politely, then by force) and remove its profile. Safe to call twice."""
        if self._pid is not None and self._returncode is None:
            if not self._dead and self._to_browser is not None:
                try:
                    self._send("Browser.close")
                except (OSError, RuntimeError):
                    pass  # it is going away anyway; the kill below makes sure
            if self._wait_exit(5.0) is None:
                log.debug("chromium did not exit after Browser.close; killing it")
            # Always kill the group: helper processes (zygote, renderers) can outlive the browser.
            try:
                os.killpg(self._pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self._returncode is None:
                self._wait_exit(10.0)
        for attr in ("_to_browser", "_from_browser", "_stderr"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                try:
                    os.close(fd)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads.clear()
        if self._profile is not None:
            # Chromium may still be flushing its profile in the instant it dies; a leftover temp
            # file is not worth failing the run for.
            shutil.rmtree(self._profile.name, ignore_errors=True)
            self._profile = None

    def _wait_exit(self, timeout_s: float) -> int | None:
        """Reap the browser process if it exits within ``timeout_s``; its status, or None."""
        if self._pid is None:
            return None
        if self._returncode is not None:
            return self._returncode
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pid, status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                self._returncode = -1  # reaped elsewhere; nothing left to wait for
                return self._returncode
            if pid:
                self._returncode = os.waitstatus_to_exitcode(status)
                return self._returncode
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _read_messages(self) -> None:
        # Runs in a thread so that waits can time out: a blocking read on the pipe cannot.
        fd = self._from_browser
        assert fd is not None
        try:
            for raw in _split_stream(fd, b"\0", 1 << 16):
                if raw:  # a message cut off by the browser's exit fails to parse, which ends the reader
                    self._messages.put(json.loads(raw))
        except (OSError, ValueError) as e:
            log.debug("DevTools pipe reader stopped: %s", e)
        finally:
            self._messages.put(_EOF)

    def _read_stderr(self) -> None:
        fd = self._stderr
        assert fd is not None
        try:
            for line in _split_stream(fd, b"\n", 1 << 14):
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self._stderr_tail.append(text)
                    log.debug("chromium: %s", text)
        except OSError:
            pass

    def _died(self, what: str) -> RuntimeError:
        self._dead = True
        # Give the stderr reader a moment: the last lines are usually the reason it died.
        code = self._wait_exit(2.0)
        time.sleep(0.1)
        tail = "\n".join(self._stderr_tail) or "(no output)"
        return RuntimeError(f"chromium exited (status {code}) while waiting for {what}; its stderr ends:\n{tail}")

    # -- protocol ---------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        if self._dead or self._to_browser is None:
            raise self._died(f"a reply to {method}")
        with self._write_lock:
            self._next_id += 1
            msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
            if session is not None:
                msg["sessionId"] = session
            data = json.dumps(msg).encode() + b"\0"
            try:
                while data:
                    data = data[os.write(self._to_browser, data):]
            except BrokenPipeError:
                raise self._died(f"a reply to {method}") from None
            return msg["id"]

    def _pump(self, deadline: float, what: str) -> None:
        """Take one message off the pipe (filing it as a response or a session event)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"timed out after {self.timeout_s:g} s waiting for {what}")
        try:
            msg = self._messages.get(timeout=remaining)
        except queue.Empty:
            raise RuntimeError(f"timed out after {self.timeout_s:g} s waiting for {what}") from None
        if msg is _EOF:
            self._messages.put(_EOF)  # every later wait must see it too
            raise self._died(what)
        assert isinstance(msg, dict)
        if "id" in msg:
            if msg["id"] in self._waiting:
                self._responses[msg["id"]] = msg
        elif msg.get("sessionId") in self._events:
            self._events[msg["sessionId"]].append(msg)
        # Browser-level events and those of closed targets are not needed by anything here.

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
              what: str | None = None) -> dict[str, Any]:
        """Send a command and wait for its reply; its result, or RuntimeError for a protocol error."""
        msg_id = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout_s
        self._waiting.add(msg_id)
        try:
            while msg_id not in self._responses:
                self._pump(deadline, what or f"the reply to {method}")
        finally:
            # After a timeout the reply may still come; forgetting the id lets _pump discard it.
            self._waiting.discard(msg_id)
        reply = self._responses.pop(msg_id)
        if "error" in reply:
            err = reply["error"]
            raise RuntimeError(f"{method} failed: {err.get('message')} {err.get('data', '')}".rstrip())
        return reply.get("result", {})

    def _wait_event(self, session: str, start: int, match: Callable[[dict[str, Any]], bool], what: str) -> int:
        """Index of the first event of ``session`` at or after ``start`` that ``match``es."""
        deadline = time.monotonic() + self.timeout_s
        events = self._events[session]
        i = start
        while True:
            while i < len(events):
                if match(events[i]):
                    return i
                i += 1
            self._pump(deadline, what)

    @contextmanager
    def _page(self, page: Path) -> Iterator[tuple[str, str, list[str]]]:
        """Open ``page`` in a fresh target and wait for its load event.

        Yields (session id, url, navigation errors); the target is closed afterwards. Domains are
        enabled on the blank target before navigating so no early console message is missed.
        """
        url = page.resolve().as_uri()
        target = self._call("Target.createTarget", {"url": "about:blank"})
        target_id = target["targetId"]
        session: str | None = None
        try:
            # flatten: messages for the page carry its sessionId on the browser's own pipe.
            session = self._call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
            self._events[session] = []
            for domain in ("Runtime", "Log", "Page", "Network"):
                self._call(f"{domain}.enable", session=session)
            # Headless windows lose some height to (invisible) browser UI; pin the viewport so
            # that width x height is what the page lays out in and what a screenshot shows.
            self._call("Emulation.setDeviceMetricsOverride",
                       {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                       session)
            start = len(self._events[session])
            nav = self._call("Page.navigate", {"url": url}, session, what=f"navigation to {url}")
            nav_errors: list[str] = []
            if nav.get("errorText"):
                # The browser shows an error page instead; its load event says nothing about ours.
                nav_errors.append(f"failed to load {url}: {nav['errorText']}")
            else:
                loader = nav.get("loaderId")
                # A load event still pending from about:blank would come before our document's
                # commit, so count only one that follows the main frame's navigation to this loader.
                committed = self._wait_event(
                    session, start,
                    lambda m: m.get("method") == "Page.frameNavigated"
                    and not m["params"]["frame"].get("parentId")
                    and (loader is None or m["params"]["frame"].get("loaderId") == loader),
                    f"the navigation to {url} to commit (Page.frameNavigated)",
                )
                self._wait_event(session, committed + 1, lambda m: m.get("method") == "Page.loadEventFired",
                                 f"the load event of {url} (Page.loadEventFired)")
            yield session, url, nav_errors
        finally:
            if session is not None:
                self._events.pop(session, None)
            if not self._dead:
                try:
                    self._call("Target.closeTarget", {"targetId": target_id})
                except RuntimeError:
                    if self._dead:
                        raise
                    log.debug("could not close target %s", target_id, exc_info=True)

    # -- public -----------------------------------------------------------------------------

    def check(self, page: Path, expression: str | None = None) -> PageResult:
        """Load ``page`` and return its errors and the value of ``expression`` evaluated after load.

        ``expression`` is evaluated in the page (promises awaited) and its value returned as JSON;
        if it throws, the exception is one of the errors and the value is None.
        """
        with self._page(page) as (session, url, errors):
            value: object = None
            # Evaluate even without an expression: the reply is ordered after every event the
            # page sent before it, so errors raised by the load's last scripts are in by then.
            res = self._call(
                "Runtime.evaluate",
                {"expression": expression if expression is not None else "0", "returnByValue": True, "awaitPromise": True},
                session, what=f"evaluating {expression!r} in {url}" if expression else f"{url} to settle",
            )
            errors.extend(page_errors(self._events[session]))
            if "exceptionDetails" in res:
                errors.append(f"expression {expression!r} threw: {_exception_text(res['exceptionDetails'])}")
            elif expression is not None:
                value = res.get("result", {}).get("value")
        # A page that cannot be opened is reported by Page.navigate and by Network.loadingFailed.
        return PageResult(url=url, errors=list(dict.fromkeys(errors)), value=value)

    def screenshot(self, page: Path, png: Path, full_page: bool = True) -> Path:
        """Write a PNG of ``page`` to ``png``: the whole document when ``full_page``, else the width x height viewport."""
        with self._page(page) as (session, url, nav_errors):
            if nav_errors:
                raise RuntimeError(nav_errors[0])
            params: dict[str, Any] = {"format": "png"}
            if full_page:
                size = self._call("Page.getLayoutMetrics", session=session)["cssContentSize"]
                # Rounded up to whole CSS pixels so the last fractional row is not cut off.
                width = max(math.ceil(size["width"]), 1)
                height = max(math.ceil(size["height"]), 1)
                params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
            data = self._call("Page.captureScreenshot", params, session, what=f"a screenshot of {url}")["data"]
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        return png


def _close_inherited_actions() -> list[tuple[int, int]]:
    """posix_spawn actions closing the inheritable descriptors we were started with (above 2).

    Popen's close_fds does this for its children; posix_spawn does not, and a browser holding,
    say, a pipe our own caller waits on would delay that caller's EOF until the browser is gone.
    """
    actions = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            inheritable = fd > 2 and os.get_inheritable(fd)
        except OSError:
            continue  # the listing's own descriptor, already closed
        if inheritable:
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
    return actions


def _dup_high(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered at least _SPARE_FD_MIN."""
    import fcntl  # POSIX only, like the rest of this script; imported here to keep the top tidy

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _SPARE_FD_MIN)


def png_name(rel: Path) -> str:
    """The screenshot file name of a page: its relative path, '/' as '__', with '.png' appended."""
    return rel.as_posix().replace("/", "__") + ".png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("site", type=Path, metavar="SITE_DIR", help="folder whose *.html files are checked (recursively)")
    p.add_argument("--png-dir", type=Path, help="also write a full-page screenshot of every page here")
    p.add_argument("--chromium", help="browser binary (default: /usr/bin/chromium or chromium on PATH)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any one browser step (default: 60)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    chromium = find_chromium(args.chromium)
    if chromium is None:
        log.error("chromium not found; install it with `apt-get install -y chromium` (Debian) or pass --chromium PATH")
        return 3
    if not args.site.is_dir():
        log.error("%s is not a directory", args.site)
        return 2
    pages = sorted(args.site.rglob("*.html"))
    if not pages:
        log.warning("no *.html files under %s", args.site)
    failed = 0
    with Browser(chromium, timeout_s=args.timeout) as browser:
        for page in pages:
            rel = page.relative_to(args.site)
            result = browser.check(page)
            if result.errors:
                failed += 1
                log.error("%s: %d error(s): %s", rel, len(result.errors), " | ".join(result.errors))
            else:
                log.info("%s: ok", rel)
            if args.png_dir is not None:
                png = browser.screenshot(page, args.png_dir / png_name(rel))
                log.info("%s: wrote %s", rel, png)
    log.info("%d page(s) checked, %d with errors", len(pages), failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
