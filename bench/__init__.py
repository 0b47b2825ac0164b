"""Benchmarks of Gemini Compression Studio: ``python -m bench [--quick] [--only size,pruning,...]``.

Each section (size, pruning, precision, sparse, sweep, headline, gpu) is a module with
``run(quick: bool, ctx=None) -> dict``; the runner writes ``bench/results/<section>.json`` and
regenerates ``docs/benchmarks.md``. Everything is measured through the engine's own functions.
"""
