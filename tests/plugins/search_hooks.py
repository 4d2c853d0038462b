"""A conditional search-space hook for the tests, named by its dotted path."""


def learning_rate(cfg, trial) -> None:
    trial.suggest_float("trainer.learning_rate", 0.01, 0.1, log=True)
