"""Benchmarks of authx-epoch against the floor (AuthX with no blocklist callback).

Run them all with ``python -m bench`` (``python -m bench --help`` for the options). Every figure
is measured in one run, in interleaved rounds, and reported as a ratio to the floor measured in
the same rounds, so the figures of a noisy machine stay comparable. Nothing here asserts a time.
"""
