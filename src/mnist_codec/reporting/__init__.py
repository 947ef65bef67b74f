"""Figures (``plots``) and the self-contained HTML report (``html`` and its template)."""
