"""Driving wrk for the receiver benchmark: the Lua script that posts pre-signed bodies, the run, and
reading its report; and the process's CPU time, read from /proc."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

WRK = "/usr/bin/wrk"
TASKSET = "/usr/bin/taskset"

LUA = """
local bodies = {}
local n = 0
local count = 0

function setup(thread)
  thread:set("thread_id", count)
  count = count + 1
end

function init(args)
  local line_no = 0
  for line in io.lines("%(path)s") do
    if line_no %% %(threads)d == thread_id then bodies[#bodies + 1] = line end
    line_no = line_no + 1
  end
end

function request()
  n = n %% #bodies + 1
  return wrk.format("POST", "/ipn", {["Content-Type"] = "application/x-www-form-urlencoded"}, bodies[n])
end
"""


def pinned(cpu: str) -> list[str]:
    """A command prefix that keeps the process on `cpu` (empty when pinning is off)."""
    return [TASKSET, "-c", cpu] if cpu else []


def _ms(value: str) -> float:
    """A wrk duration (`850.00us`, `1.20ms`, `1.05s`, `1.01m`) in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value).groups()  # type: ignore[union-attr]  # wrk's format
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def percentile_ms(wrk_report: str, percent: int) -> float:
    """A line of wrk's latency distribution (`     99%    5.01ms`), anchored at the start of the line:
    a thread-stats column such as `57.50%` must not be taken for the 50% line."""
    match = re.search(rf"^\s+{percent}%\s+(\S+)\s*$", wrk_report, re.MULTILINE)  # wrk pads "1.77s "
    if match is None:
        raise SystemExit(f"no {percent}% line in wrk's report:\n{wrk_report}")
    return _ms(match.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, lua: Path, threads: int, connections: int, seconds: int, load_cpu: str) -> str:
    """wrk's report of `seconds` of load on `POST /ipn` at `port`, from `load_cpu` ('' for any)."""
    command = [
        *pinned(load_cpu),
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}/ipn",
    ]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
