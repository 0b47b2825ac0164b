"""The classifier kind (vision, tabular and text classification): ``info.py`` describes it without torch;
``engine.py`` is what the shared workflows call. The stages it runs on (scenarios/, techniques/, compress/,
measure.py, training/) predate the kinds and are shared with the kinds that reuse them."""
