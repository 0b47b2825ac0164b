"""The recommender kind: an interaction log (who interacted with what, when), split leave-last-out per user,
models that score (user, item) pairs from embedding tables, implicit-feedback training and ranking metrics.

A file per stage: ``data`` (reading a log, the synthetic demo, the split and its sampled negatives),
``models`` (matrix factorization, two towers, two towers reading item texts), ``train`` (BPR, sampled softmax
or BCE with sampled negatives, and ``als``: alternating least squares for matrix factorization; early
stopping on validation NDCG@10), ``metrics`` (HR, NDCG, AUC, Recall with intervals over
users). ``info.py`` is the kind's torch-free description; ``scenario.py`` its scenario. This package's
``__init__`` imports nothing, so reading the description never loads torch.

The engine (what the shared doors call, ``engine.py``): ``baseline`` (the trained model, cached),
``compress`` (the point config and the techniques: row-wise bits and hot rows, rare-row, dimension and tower
pruning, low rank, quotient-remainder tables, recovery), ``stored`` (the stored tensors and layout, and
the model rebuilt from them), ``measure`` (a point's figures),
``sweep`` (the grid and the sweep session), ``export`` and ``scorer`` (the export folder and its standalone
numpy scorer), ``retime``, ``sensitivity`` (per table) and ``flags`` (the CLI's).
"""
