"""Dashboard helpers: figures (plots), background jobs (jobs), the HTML report (report) and
shared Streamlit widgets (state, sidebar, views). Pages stay thin views over these; no torch here."""
