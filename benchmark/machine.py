"""What every benchmark prints first: the machine, how loaded it is, and the torch threads it runs with."""

from __future__ import annotations

import os

import torch


def set_threads_and_describe(threads: int) -> None:
    """Use ``threads`` torch CPU threads and print one line about the machine.

    Other processes share the cores, and the 1-minute load average says how much, so readers can
    tell a quiet run from a noisy one.
    """
    torch.set_num_threads(threads)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
