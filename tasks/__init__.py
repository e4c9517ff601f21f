"""Invoke task modules: command-line flags and host selection only; the work is in railsfab/."""
