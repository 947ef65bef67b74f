"""The DVC stages, one module each: a stage's I/O and wiring around the library.

``stages/<stage>.py`` parses its paths and calls ``run`` of the module of the same name
here. A stage module imports only the library code that makes its outputs, plus the side
channels every stage may use without depending on them (the stage runner, timing,
progress, MLflow tracking): see the README's layout section.
"""
