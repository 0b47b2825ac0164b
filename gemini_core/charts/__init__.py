"""Plotly figures: points tables / records in, ``go.Figure`` out, for the dashboard, the HTML report and bench.

No Streamlit in here, so every builder can be tested and exported (PNG, HTML) on its own.
``style`` holds the shared encodings, ``sweep`` the sweep charts, ``training`` the training curves,
``sensitivity`` the Sensitivity page's charts and ``images`` the PNG / HTML export.
"""
