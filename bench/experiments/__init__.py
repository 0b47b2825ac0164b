"""One-off investigations beside the maintained suite (``python -m bench``): each module answered one
question and wrote its figures to bench/results/; README.md here indexes them. Run one as
``python -m bench.experiments.NAME --help``. Nothing here is imported by ``python -m bench``.
"""
