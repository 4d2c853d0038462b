"""Learning-rate schedule pieces Keras lacks: linear warm-up in front of any schedule."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="experiments")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Rise linearly from 0 to ``target`` over ``warmup_steps``, then follow ``base``."""

    def __init__(self, base, warmup_steps: int, target: float):
        self.base = base
        self.warmup_steps = int(warmup_steps)
        self.target = float(target)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.target * (step + 1.0) / float(max(1, self.warmup_steps))
        after = step - self.warmup_steps
        base = self.base(after) if callable(self.base) else keras.ops.cast(self.base, "float32")
        return keras.ops.where(step < self.warmup_steps, warm, base)

    def get_config(self):
        base = keras.optimizers.schedules.serialize(self.base) if callable(self.base) else self.base
        return {"base": base, "warmup_steps": self.warmup_steps, "target": self.target}

    @classmethod
    def from_config(cls, config):
        base = config["base"]
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        return cls(base, config["warmup_steps"], config["target"])
