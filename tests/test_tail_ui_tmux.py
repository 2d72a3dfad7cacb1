"""The live tail UI in a real terminal: tmux runs `bpfload run`, the test reads the screen and types."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import linux_bpf_denied

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
# Without COLUMNS/LINES from pytest's environment: rich would size the screen from them.
CLI = f"env -u COLUMNS -u LINES {sys.executable} -c 'import sys; from loader.cli import main; sys.exit(main())'"


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"bpfload-test-{uuid.uuid4().hex[:8]}"
        self.session = "ui"
        self.tmp = tmp_path

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", self.session, "-x", "120", "-y", "45", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{screen}")

    def wait_until(self, ok, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ok(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{what}: never on the screen:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.kill()


def run_in_tmux(tmux: Tmux, tmp_path: Path, args: str) -> tuple[Path, Path]:
    err, done = tmp_path / "stderr", tmp_path / "done"
    tmux.start(f"cd {REPO} && {CLI} run {args} 2>{err}; echo $? > {done}; sleep 30")
    return err, done


def quit_and_check(tmux: Tmux, err: Path, done: Path) -> None:
    tmux.keys("q")
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.read_text().strip() == "0"
    summary = err.read_text()
    assert "events," in summary and "lost" in summary and "Traceback" not in summary


def test_sim_live_screen_with_maps_filter_and_quit(tmux, tmp_path):
    err, done = run_in_tmux(tmux, tmp_path, "examples/opensnoop.bpf.o --kprobe do_sys_openat2 --duration 60")
    screen = tmux.wait_for("bpfload run · opensnoop · kprobe do_sys_openat2 · sim")
    tmux.wait_for("comm=")
    tmux.keys("/")
    tmux.keys("-l", "passwd")
    tmux.keys("Enter")
    tmux.wait_for("filter: 'passwd'")
    # A capture can catch the terminal mid-redraw (old lines below new ones): wait for a whole frame.
    screen = tmux.wait_until(lambda text: "filename=/etc/passwd" in text and all(
        "passwd" in line for line in text.splitlines() if "filename=" in line), "only /etc/passwd opens shown")
    assert "    0 " in screen and "    1 " in screen  # a row per simulated CPU
    quit_and_check(tmux, err, done)
    final = tmux.screen()  # the last frame stays on the normal screen, without the key hints
    assert "bpfload run · opensnoop" in final and "filename=/etc/passwd" in final and "q quit" not in final


def test_sim_histogram_is_refreshed_on_screen(tmux, tmp_path):
    err, done = run_in_tmux(tmux, tmp_path, "examples/latency.bpf.o --duration 60")
    tmux.wait_for("kretprobe vfs_read")
    screen = tmux.wait_for("distribution")  # the hist map, drawn as bcc draws it, while running
    assert "->" in screen and "*" in screen
    quit_and_check(tmux, err, done)


@pytest.mark.skipif(linux_bpf_denied() is not None, reason=str(linux_bpf_denied()))
def test_live_screen_shows_events_and_obeys_pause_filter_quit(tmux, tmp_path):
    err = tmp_path / "stderr"
    done = tmp_path / "done"
    cmd = (f"cd {REPO} && {CLI} run "
           f"examples/opensnoop_tp.bpf.o --kernel linux --tracepoint syscalls/sys_enter_openat --duration 60 "
           f"2>{err}; echo $? > {done}; sleep 30")
    tmux.start(cmd)
    screen = tmux.wait_for("bpfload run · opensnoop_tp · tracepoint syscalls:sys_enter_openat · linux")
    assert "cpu  events  ev/s  lost  buffer" in screen
    # The machine opens files all the time: filter on a name only our open has, then open it.
    marker = Path("/tmp") / f"tail-ui-{uuid.uuid4().hex[:8]}"  # short: a long path would wrap on screen
    tmux.keys("/")
    tmux.keys("-l", marker.name)
    tmux.wait_for(f"filter: {marker.name}")
    tmux.keys("Enter")
    tmux.wait_for(f"filter: '{marker.name}'")
    marker.write_text("x")
    with open(marker):
        pass
    marker.unlink()
    screen = tmux.wait_for(f"filename={marker}")  # our open, decoded from BTF/DWARF, on the screen
    assert "comm=" in screen and "pid=" in screen
    tmux.wait_until(lambda text: all(marker.name in line for line in text.splitlines() if "filename=" in line),
                    "the filter hides the other opens")

    tmux.keys("p")
    tmux.wait_for("PAUSED")
    tmux.keys("p")
    tmux.keys("Escape")  # clears the filter: the machine's other opens show again
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        others = [line for line in tmux.screen().splitlines() if "filename=" in line and marker.name not in line]
        if others:
            break
        with open(__file__):  # an open of our own, in case the machine is quiet
            pass
        time.sleep(0.2)
    assert others and "filter:" not in tmux.screen()

    tmux.keys("q")
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.read_text().strip() == "0"
    summary = err.read_text()
    assert "events," in summary and "lost" in summary and "Traceback" not in summary
