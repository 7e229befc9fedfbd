"""What every layer of the harness shares: errors and the one-line exit, the plugin registry,
device and dtype facts, clocks and the one best-of-N timing loop, atomic file writes,
provenance (commit, packages, CPU), and the vocabulary of flop counts.

May import: nothing of the harness (the bottom layer).
"""
