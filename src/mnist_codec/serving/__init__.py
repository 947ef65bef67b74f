"""Serving a codec: the pyfunc model's logic (``model``), the code MLflow runs (``served_model``),
digits as PNG files (``digits``)."""
