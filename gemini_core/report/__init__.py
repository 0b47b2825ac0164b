"""The stakeholder report: baseline vs chosen point in one sentence, and a self-contained HTML file."""
