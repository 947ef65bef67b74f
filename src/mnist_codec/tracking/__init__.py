"""MLflow: the store (``store``), runs (``runs``), the Model Registry (``registry``) and the team's
tracking server (``server``). A side channel of the stages: what is logged changes no DVC output."""
