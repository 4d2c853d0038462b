"""The experiments fixtures (real Hydra configs, temporary MLflow stores) for the fault tests."""

from tests.experiments.conftest import make_cfg, mlflow_client, tracking_uri  # noqa: F401
