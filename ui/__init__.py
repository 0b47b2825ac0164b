"""Dashboard views: background jobs the pages own (jobs), session state (state) and shared Streamlit widgets
(views, downloads, sensitivity_view). Pages stay thin views over these; no torch here. Figures live in
``gemini_core.charts``, the points table in ``gemini_core.results.table`` and the HTML report in
``gemini_core.report``."""
