"""A command stopped with SIGTERM (``kill``, a CI timeout) cleans up as one interrupted with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from vpp.commands.common import terminated_as_interrupted

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vpp.commands.common import terminated_as_interrupted
    marker = Path(sys.argv[1])
    try:
        with terminated_as_interrupted():
            print("ready", flush=True)
            time.sleep(60)
    except KeyboardInterrupt:
        marker.write_text("cleaned up")
""")


def test_sigterm_runs_the_cleanup_of_what_the_command_started(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert marker.read_text() == "cleaned up"


def test_the_previous_handler_is_back_afterwards() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with terminated_as_interrupted():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
