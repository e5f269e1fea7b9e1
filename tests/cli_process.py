"""Running `cvco-ipn` as an operator does: a real process, on a pipe or on a terminal (a pseudo-terminal)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, TEST_REDIS_URL

CVCO_IPN = str(Path(sys.executable).with_name("cvco-ipn"))
TERMINAL_COLUMNS = 200
_SGR = re.compile(r"\x1b\[[0-9;]*m")
"""Colour and weight, the only sequences the CLI itself writes on a terminal."""


@dataclass(frozen=True)
class Ran:
    status: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


SHOPS_JSON = json.dumps(
    {
        SHOP_ID: {
            "test_key": TEST_KEY,
            "production_key": PRODUCTION_KEY,
            "algorithms": ["HMAC-SHA-256", "SHA-1"],
            "modes": ["TEST", "PRODUCTION"],
        }
    }
)
"""`CVCO_SHOPS` for the test shop of conftest, as a deployment writes it."""


def cli_env(**env: str) -> dict[str, str]:
    """The environment of a CLI process: no `CVCO_*` of the caller's but `CVCO_REDIS_URL` (the test
    database) and what `env` sets; a value of "" unsets a variable."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("CVCO_")}
    base["CVCO_REDIS_URL"] = TEST_REDIS_URL
    base.update(env)
    return {name: value for name, value in base.items() if value != ""}


def run_cli(
    *argv: str, env: dict[str, str] | None = None, terminal: bool = False, timeout: float = 60
) -> Ran:
    """Run `cvco-ipn argv...` to its end; stdout on a pipe, or on a 200-column terminal."""
    environment = env if env is not None else cli_env()
    if not terminal:
        done = subprocess.run(
            [CVCO_IPN, *argv], env=environment, capture_output=True, timeout=timeout, check=False
        )
        return Ran(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode())
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, TERMINAL_COLUMNS, 0, 0))
    process = subprocess.Popen(
        [CVCO_IPN, *argv], env=environment, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err_bytes = process.communicate(timeout=timeout)
    err = err_bytes.decode()
    status = process.returncode
    # a terminal turns \n into \r\n
    return Ran(status, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"), err)


def _interruptible() -> None:
    """In the child: Ctrl-C as on a terminal (a shell's background job inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running `cvco-ipn argv...` (worker, serve, events tail --follow) on pipes."""
    # unbuffered: a test waiting on the pipe with select() must not find lines already in a buffer
    return subprocess.Popen(
        [CVCO_IPN, *argv],
        bufsize=0,
        env=env if env is not None else cli_env(),
        preexec_fn=_interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def interrupt(process: subprocess.Popen[bytes], timeout: float = 30) -> Ran:
    """Ctrl-C a process started by `start_cli`, then collect what it wrote."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return Ran(process.returncode, out.decode("utf-8", "replace"), err.decode())


def raw_controls(text: str) -> list[str]:
    """Control characters in the output that the CLI did not write itself (its line ends and colours)."""
    bare = _SGR.sub("", text)
    return [char for char in bare if (ord(char) < 0x20 and char not in "\n\t") or 0x7F <= ord(char) <= 0x9F]
