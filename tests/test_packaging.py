"""A codec packaged for serving (mnist_codec.serving.packaging): the requirements each logged model
names, and MLflow's check of them without mapping every installed distribution's files."""

from __future__ import annotations

import importlib.metadata

import mlflow
import pytest
import torch
from mlflow.utils import requirements_utils

from mnist_codec.serving import packaging
from mnist_codec.tracking import registry


def test_every_logged_model_requires_the_running_versions_of_its_packages(registered, registry_client):
    versions = registry_client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'")
    assert versions
    want = {
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={importlib.metadata.version('numpy')}",
        f"mlflow=={mlflow.__version__}",
        "mnist-codec",
    }
    for v in versions:
        path = mlflow.artifacts.download_artifacts(f"models:/{registry.REGISTERED_MODEL}/{v.version}/requirements.txt")
        with open(path, encoding="utf-8") as f:
            assert {line.strip() for line in f if line.strip()} == want, v.version


def test_the_check_of_the_requirements_maps_no_installed_distribution(monkeypatch):
    """Inside a model's logging, MLflow's check of the four requirements finds each package's
    module in the project's own map (mapping every distribution took 1.5 s of each stage); it
    still tells a requirement the environment does not meet, and afterwards MLflow's map is its
    own again: computed in full the next time it is needed."""
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)

    def mapped():
        raise AssertionError("every installed distribution was mapped")

    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", mapped)
    with packaging.known_modules():
        assert requirements_utils._check_requirement_satisfied(f"mlflow=={mlflow.__version__}") is None
        assert requirements_utils._check_requirement_satisfied("mnist-codec") is None
        unmet = requirements_utils._check_requirement_satisfied("torch==0.0.1")
        assert unmet is not None and unmet.package_name == "torch"
    assert requirements_utils._MODULES_TO_PACKAGES is None and requirements_utils._PACKAGES_TO_MODULES is None
    with pytest.raises(AssertionError, match="every installed distribution was mapped"):
        requirements_utils._check_requirement_satisfied("mnist-codec")


def test_a_map_mlflow_computed_already_is_left_as_it_is(monkeypatch):
    full = {"torch": ["torch"], "sklearn": ["scikit-learn"]}
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", full)
    with packaging.known_modules():
        assert requirements_utils._MODULES_TO_PACKAGES is full
    assert requirements_utils._MODULES_TO_PACKAGES is full
