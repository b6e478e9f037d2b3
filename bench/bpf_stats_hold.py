#!/usr/bin/python3
"""Holds BPF run-time statistics on (BPF_ENABLE_STATS) until killed.

The kernel then counts run_cnt and run_time_ns of every BPF program
(bpftool prog show): the programs' own cost per run, which process CPU
time on a shared machine cannot resolve. The statistics stay on only while
the returned fd is open, so they go off with this process, also if the
benchmark dies; kernel.bpf_stats_enabled is never changed.
"""
import ctypes
import os
import signal
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(struct.pack("I", BPF_STATS_RUN_TIME), 128)
fd = libc.syscall(SYS_BPF, BPF_ENABLE_STATS, attr, 128)
if fd < 0:
    err = ctypes.get_errno()
    sys.exit(f"bpf_stats_hold: BPF_ENABLE_STATS: {os.strerror(err)}")
print("on", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
