#!/usr/bin/env python3
"""Measures the cost of one audio mixer tick with N participants.

A tick here is everything the media clock does per frame: every leg's frame
arrives as wire bytes (s16le, as the SIP workers' pipes deliver it) and is
pushed into its buffer, the mixer mixes, and every leg's output is turned
back into wire bytes.  Legs cycle
through the given rates (phones at 8 and 16 kHz, browsers at 48 kHz); a few
of them talk (tones), the rest send low background noise, as in a real room.

    scripts/bench_mixer.py --participants 500 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mixer import AudioMixer  # noqa: E402


def build_frames(rate: int, frame_ms: int, talker: bool, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    count = rate * frame_ms // 1000
    if talker:
        t = np.arange(count) / rate
        signal = 6000 * np.sin(2 * np.pi * (300 + 97 * seed % 2000) * t)
    else:
        signal = rng.normal(0, 30, count)  # about -60 dBFS of room noise
    return signal.astype("<i2").tobytes()


def run(
    participants: int,
    ticks: int,
    rates: list[int],
    talkers: int,
    max_mixed: int,
    warmup: int,
) -> dict[str, object]:
    mixer = AudioMixer(max_mixed=max_mixed)
    frame_ms = mixer.frame_ms
    legs = []
    for index in range(participants):
        rate = rates[index % len(rates)]
        leg_id = f"leg-{index}"
        mixer.add_leg(leg_id, rate)
        legs.append((leg_id, build_frames(rate, frame_ms, index < talkers, index)))

    samples = []
    now = 0.0
    gc.collect()
    for tick in range(warmup + ticks):
        start = time.perf_counter()
        for leg_id, wire in legs:
            mixer.push_bytes(leg_id, wire, now)
        out = mixer.tick(now)
        for leg_id, _ in legs:
            out[leg_id].tobytes()
        elapsed = time.perf_counter() - start
        if tick >= warmup:
            samples.append(elapsed * 1000.0)
        now += frame_ms / 1000.0

    values = np.array(samples)
    return {
        "participants": participants,
        "frame_ms": frame_ms,
        "ticks": ticks,
        "rates": rates,
        "talkers": min(talkers, participants),
        "max_mixed": max_mixed,
        "mix_ms_median": round(float(np.median(values)), 4),
        "mix_ms_p99": round(float(np.percentile(values, 99)), 4),
        "mix_ms_max": round(float(values.max()), 4),
        "frame_percent_median": round(float(np.median(values)) / frame_ms * 100, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=1000, help="at least 500")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--rates",
        default="8000,16000,48000",
        help="comma-separated leg rates, cycled over the legs",
    )
    parser.add_argument(
        "--talkers",
        type=int,
        default=4,
        help="legs sending speech-level tones (the rest send noise)",
    )
    parser.add_argument("--max-mixed", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.participants < 1:
        parser.error("--participants must be at least 1")
    if args.ticks < 500:
        parser.error("--ticks must be at least 500")
    try:
        rates = [int(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates must be integers, got {args.rates!r}")

    result = run(
        args.participants, args.ticks, rates, args.talkers, args.max_mixed, args.warmup
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
