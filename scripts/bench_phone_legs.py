"""Benchmark: N phone legs in the demo room of the real bridge, on loopback.

Starts ``python -m bridge serve`` (a temporary config: port 0, a temporary
state directory, dial-out over TLS + SRTP with a throw-away PKI, enough SIP
workers for N calls), starts N baresip phones (each plays a tone file and
records nothing: no Python in their media path), dials them all into the
demo room through the host API, waits until every leg is connected and the
buffers have settled, measures over a steady window, then hangs up every leg
and stops every process it started, also on error, Ctrl-C, SIGTERM or when
its time bound runs out.

Figures (``--json`` prints them as one object):

- ``cpu_percent``: user + system CPU of the bridge's processes only (its main
  process plus the SIP workers listed by ``/api/health``) over the window, in
  percent of one core; ``cpu_percent_phones`` is what the baresip phones took
  on the same machine, ``cpu_percent_other`` what everything else took (a
  run with much of it was not alone), ``machine_cpu_percent`` how busy all
  cores were (100 = every core);
- ``late_frames_percent``: frames that were not there when the mixer needed
  them, in percent of legs x ticks: jitter-buffer underruns (roster
  ``media.underruns``) plus every leg's frame of each media-clock tick that
  ran late or was skipped (``/api/health`` clock ``late_ticks`` and
  ``skipped_ticks``); ``underrun_frames_percent`` counts the underruns alone;
- ``added_latency_ms_p50``/``p99``: time the bridge adds, sampled per leg
  every ``--sample-interval`` seconds: the audio waiting in the leg's jitter
  buffer in the main process (roster ``media.buffered_ms``), plus, from the
  worker carrying the leg (``/api/health`` ``sip_workers``), the one-way
  delays of its two pipes and the mean time a mixed frame waited in the
  worker before pjsua took it.  pjsua's own jitter buffer and conference
  bridge, and the phones' buffers, are not included.

Usage: ``python scripts/bench_phone_legs.py --legs 8 --seconds 20 --json``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.bridge.harness import BridgeProcess, write_config  # noqa: E402
from tests.e2e.baresip import Phone, Pki, make_pki, write_tone  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOM = "demo"
CALLS_PER_WORKER = 4
#: seconds allowed for all legs to connect, plus this much per leg
CONNECT_TIMEOUT = 30.0
CONNECT_PER_LEG = 0.5
#: seconds allowed for start-up and teardown around the measured work
OVERHEAD_BUDGET = 150.0


class BenchTimeout(Exception):
    """The benchmark ran past its time bound."""


# -- /proc ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# -- the bridge and its API ---------------------------------------------------------


class Api:
    """The host API over one kept-alive HTTPS connection."""

    def __init__(self, bridge: BridgeProcess, key: str) -> None:
        self._port = bridge.port
        self._context: ssl.SSLContext = bridge.context
        self._key = key
        self._connection: http.client.HTTPSConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(
                    "127.0.0.1", self._port, context=self._context, timeout=15
                )
            headers = {"Authorization": f"Bearer {self._key}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            try:
                self._connection.request(method, path, body=data, headers=headers)
                response = self._connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            kind = response.getheader("Content-Type", "")
            parsed = (
                json.loads(payload) if kind.startswith("application/json") else None
            )
            return response.status, parsed
        raise AssertionError("unreachable")

    def dial(self, uri: str, name: str) -> str:
        status, body = self.request(
            "POST", f"/api/rooms/{ROOM}/dialout", {"uri": uri, "display_name": name}
        )
        if status != 201:
            raise RuntimeError(f"dial-out of {uri} refused: {status} {body}")
        return str(body["leg"])

    def hangup(self, leg: str) -> None:
        self.request("DELETE", f"/api/rooms/{ROOM}/legs/{leg}")

    def roster(self) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/rooms/{ROOM}/roster")
        if status != 200:
            raise RuntimeError(f"roster: {status} {body}")
        return dict(body)

    def health(self) -> dict[str, Any]:
        status, body = self.request("GET", "/api/health")
        if status != 200:
            raise RuntimeError(f"health: {status} {body}")
        return dict(body)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Bridge(BridgeProcess):
    """:class:`BridgeProcess` that leaves nothing behind if its start fails."""

    def __init__(self, config: Path, log_level: str) -> None:
        try:
            super().__init__(config, log_level=log_level)
        except BaseException:
            process = getattr(self, "process", None)
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            raise


class QuietPhone(Phone):
    """A baresip phone without the ``sndfile`` module: it records nothing."""

    def _write_config(self, mediaenc: str | None, answer: str, codecs: str) -> None:
        super()._write_config(mediaenc, answer, codecs)
        path = os.path.join(self.dir, "config")
        with open(path) as f:
            lines = [line for line in f if line.strip() != "module sndfile.so"]
        with open(path, "w") as f:
            f.writelines(lines)


# -- one run -------------------------------------------------------------------------


class Processes:
    """Everything the benchmark started, stopped in :meth:`close` whatever happens."""

    def __init__(self) -> None:
        self.bridge: BridgeProcess | None = None
        self.api: Api | None = None
        self.phones: list[Phone] = []
        self.legs: list[str] = []

    def close(self) -> None:
        # hang up every leg through the API, then stop the bridge and the phones
        if self.api is not None and self.bridge is not None:
            if self.bridge.process.poll() is None:
                for leg in self.legs:
                    try:
                        self.api.hangup(leg)
                    except (OSError, http.client.HTTPException):
                        break
            self.api.close()
        if self.bridge is not None:
            try:
                self.bridge.close()
            except Exception as exc:  # killed by close() all the same
                print(f"bridge did not stop cleanly: {exc}", file=sys.stderr)
        for phone in self.phones:
            try:
                phone.stop(timeout=2.0)
            except Exception:
                pass
            finally:
                if phone.proc is not None and phone.proc.poll() is None:
                    os.killpg(phone.proc.pid, signal.SIGKILL)
                    phone.proc.wait(5)
            shutil.rmtree(phone.dir, ignore_errors=True)


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Raises :class:`BenchTimeout` in the main thread after ``seconds``.

    SIGTERM ends the run as Ctrl-C does, with a KeyboardInterrupt.
    """

    def on_alarm(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"benchmark exceeded its {seconds:.0f} s bound")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    old_term = signal.signal(signal.SIGTERM, on_term)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.signal(signal.SIGTERM, old_term)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Holds off the time bound, Ctrl-C and SIGTERM (for the clean-up)."""
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    old = {
        sig: signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if timer[0]:
            signal.setitimer(signal.ITIMER_REAL, timer[0])


def start_bridge(workdir: Path, pki: Pki, legs: int, log_level: str) -> Bridge:
    workers = max(1, -(-legs // CALLS_PER_WORKER))
    extra = "\n".join(
        [
            f'ca_file = "{pki.ca_file}"',
            f"max_workers = {workers + 1}",
            f"calls_per_worker = {CALLS_PER_WORKER}",
            "",
            "[rooms]",
            f"max_participants = {max(100, legs)}",
        ]
    )
    config = write_config(workdir, sip=True, extra=extra)
    return Bridge(config, log_level)


def wait_connected(api: Api, legs: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        roster = api.roster()
        states = {entry["leg"]: entry["state"] for entry in roster["legs"]}
        for entry in roster["ended"]:
            states.setdefault(entry["leg"], entry["state"])
        connected = sum(states.get(leg) == "connected" for leg in legs)
        ended = [leg for leg in legs if leg not in {e["leg"] for e in roster["legs"]}]
        if connected == len(legs):
            return
        if ended or time.monotonic() > deadline:
            shown = {
                leg: states.get(leg) for leg in legs if states.get(leg) != "connected"
            }
            raise RuntimeError(
                f"only {connected} of {len(legs)} legs connected: {shown}"
            )
        time.sleep(0.2)


def leg_media(roster: dict[str, Any], legs: list[str]) -> dict[str, dict[str, Any]]:
    wanted = set(legs)
    return {
        entry["leg"]: entry["media"]
        for entry in roster["legs"]
        if entry["leg"] in wanted and "media" in entry
    }


def worker_figures(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per leg: its worker's pipe delays and its inbox wait (ms), when reported."""
    out: dict[str, dict[str, Any]] = {}
    for worker in health["sip_workers"]:
        to_worker = worker.get("pipe_to_worker_ms")
        from_worker = worker.get("pipe_from_worker_ms")
        queues = worker.get("queues") or {}
        for leg in worker["legs"]:
            out[leg] = {
                "to": to_worker,
                "from": from_worker,
                "queue": (queues.get(leg) or {}).get("queue_ms"),
            }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="bench-legs-", dir=base))
    tempfile.tempdir = str(workdir)  # the phones' directories go there too
    procs = Processes()
    try:
        pki = make_pki(str(workdir))
        procs.bridge = bridge = start_bridge(workdir, pki, args.legs, args.log_level)
        key = bridge.demo_secrets()["host key"]
        procs.api = api = Api(bridge, key)

        # phones: aufile hangs up at the end of its file, so make it long
        tone_seconds = OVERHEAD_BUDGET + args.legs + args.warmup + args.seconds
        tone = write_tone(str(workdir / "tone.wav"), 440.0, seconds=tone_seconds)
        for i in range(args.legs):
            phone = QuietPhone(pki, None, user=f"p{i}", tone_file=tone)
            procs.phones.append(phone)
            phone.start()

        # dial everyone into the demo room
        for i, phone in enumerate(procs.phones):
            procs.legs.append(api.dial(phone.uri, f"phone {i}"))
        legs = procs.legs
        wait_connected(api, legs, CONNECT_TIMEOUT + CONNECT_PER_LEG * args.legs)
        time.sleep(args.warmup)

        # the steady window
        health0 = api.health()
        roster0 = api.roster()
        pids = [w["pid"] for w in health0["sip_workers"] if w["alive"]]
        main_pid = bridge.process.pid
        phone_pids = [p.proc.pid for p in procs.phones if p.proc is not None]
        main0 = cpu_seconds(main_pid)
        workers0 = sum(cpu_seconds(pid) for pid in pids)
        phones0 = sum(cpu_seconds(pid) for pid in phone_pids)
        self0 = sum(os.times()[:2])
        machine0 = machine_jiffies()
        wall0 = time.monotonic()

        latency: list[float] = []
        buffered: list[float] = []
        queue: list[float] = []
        pipes: list[float] = []
        incomplete = 0
        end = wall0 + args.seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(args.sample_interval, left))
            media = leg_media(api.roster(), legs)
            figures = worker_figures(api.health())
            for leg, stats in media.items():
                wait = float(stats["buffered_ms"])
                buffered.append(wait)
                parts = figures.get(leg, {})
                extra = [parts.get(name) for name in ("to", "from", "queue")]
                if None in extra:
                    incomplete += 1
                known = [float(x) for x in extra if x is not None]
                if parts.get("to") is not None and parts.get("from") is not None:
                    pipes.append(float(parts["to"]) + float(parts["from"]))
                if parts.get("queue") is not None:
                    queue.append(float(parts["queue"]))
                latency.append(wait + sum(known))

        wall = time.monotonic() - wall0
        main_cpu = cpu_seconds(main_pid) - main0
        workers_cpu = sum(cpu_seconds(pid) for pid in pids) - workers0
        phones_cpu = sum(cpu_seconds(pid) for pid in phone_pids) - phones0
        self_cpu = sum(os.times()[:2]) - self0
        machine1 = machine_jiffies()
        health1 = api.health()
        roster1 = api.roster()

        # late frames: underruns, and every leg's frame of a late or skipped tick
        media0, media1 = leg_media(roster0, legs), leg_media(roster1, legs)
        if len(media1) != len(legs):
            raise RuntimeError(f"{len(legs) - len(media1)} legs left during the run")
        ticks = int(roster1["mixer_ticks"]) - int(roster0["mixer_ticks"])
        clock0, clock1 = health0["clock"], health1["clock"]
        late_ticks = clock1["late_ticks"] - clock0["late_ticks"]
        skipped = clock1["skipped_ticks"] - clock0["skipped_ticks"]
        busy = clock1["busy_seconds"] - clock0["busy_seconds"]
        underruns = sum(
            media1[leg]["underruns"] - media0[leg]["underruns"] for leg in legs
        )
        received = sum(
            media1[leg]["frames_received"] - media0[leg]["frames_received"]
            for leg in legs
        )
        expected = len(legs) * (ticks + skipped)
        late = underruns + len(legs) * (late_ticks + skipped)
        machine_busy = machine1[0] - machine0[0]
        machine_total = max(1, machine1[1] - machine0[1])
        cpu = main_cpu + workers_cpu
        # whatever else ran on the machine meanwhile (it skews every figure)
        other = max(0.0, machine_busy / CLK_TCK - cpu - phones_cpu - self_cpu)

        return {
            "legs": len(legs),
            "seconds": round(wall, 2),
            "workers": len(pids),
            "cpu_percent": round(100.0 * cpu / wall, 1),
            "cpu_percent_per_leg": round(100.0 * cpu / wall / len(legs), 2),
            "cpu_percent_main": round(100.0 * main_cpu / wall, 1),
            "cpu_percent_workers": round(100.0 * workers_cpu / wall, 1),
            "cpu_percent_phones": round(100.0 * phones_cpu / wall, 1),
            "cpu_percent_bench": round(100.0 * self_cpu / wall, 1),
            "machine_cpu_percent": round(100.0 * machine_busy / machine_total, 1),
            "cpu_percent_other": round(100.0 * other / wall, 1),
            "cores": os.cpu_count(),
            "late_frames_percent": round(100.0 * late / max(1, expected), 3),
            "underrun_frames_percent": round(
                100.0 * underruns / max(1, len(legs) * ticks), 3
            ),
            "frames_missing_percent": round(
                100.0 * max(0, len(legs) * ticks - received) / max(1, expected), 3
            ),
            "mixer_ticks": ticks,
            "late_ticks": late_ticks,
            "skipped_ticks": skipped,
            "clock_busy_percent": round(100.0 * busy / wall, 1),
            "added_latency_ms_p50": rounded(percentile(latency, 50)),
            "added_latency_ms_p99": rounded(percentile(latency, 99)),
            "buffered_ms_p50": rounded(percentile(buffered, 50)),
            "buffered_ms_p99": rounded(percentile(buffered, 99)),
            "worker_queue_ms_p50": rounded(percentile(queue, 50)),
            "worker_queue_ms_p99": rounded(percentile(queue, 99)),
            "pipe_rtt_ms_p50": rounded(percentile(pipes, 50), 3),
            "pipe_rtt_ms_p99": rounded(percentile(pipes, 99), 3),
            "latency_samples": len(latency),
            "latency_samples_without_worker_figures": incomplete,
        }
    except Exception:
        if procs.bridge is not None:
            print(procs.bridge.log()[-3000:], file=sys.stderr)
        raise
    finally:
        with uninterrupted():
            procs.close()
        tempfile.tempdir = None
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=4, help="phones to dial")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the steady window"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="settling time once connected"
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.5,
        help="seconds between two latency samples of every leg",
    )
    parser.add_argument("--log-level", default="info", help="the bridge's log level")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.legs < 1 or args.seconds <= 0 or args.sample_interval <= 0:
        parser.error("--legs, --seconds and --sample-interval must be positive")

    budget = (
        OVERHEAD_BUDGET
        + CONNECT_TIMEOUT
        + CONNECT_PER_LEG * args.legs
        + args.warmup
        + args.seconds
    )
    try:
        with bounded(budget):
            result = run(args)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
