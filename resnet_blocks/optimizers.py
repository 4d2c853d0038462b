"""FusedSGD: Keras's SGD, updating each variable with one TensorFlow kernel (on the
TensorFlow backend; on JAX and PyTorch it is Keras's SGD)."""

from __future__ import annotations

import keras

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
else:  # the same optimizer, Keras's own update
    tf = None


@keras.saving.register_keras_serializable(package="resnet_blocks")
class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (same arguments, same updates) with momentum applied by
    TensorFlow's fused ``ResourceApplyKerasMomentum`` kernel, and the learning rate and
    decoupled weight decay computed once per step instead of once per variable.

    Keras builds about eight graph ops per variable for a momentum update, and evaluates the
    learning-rate schedule again for each variable's weight decay. Tracing those ops is a
    large share of a small ResNet's first training step (the fixed cost every sweep trial
    pays: ``benchmarks/sweep_overhead.py``). Under a distribution strategy, for sparse
    gradients and without momentum, Keras's own update runs unchanged.
    """

    def _fusable(self) -> bool:
        return tf is not None and self.momentum != 0 and not tf.distribute.has_strategy()

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self._fusable():
            return super()._apply_weight_decay(variables)
        learning_rate = self.learning_rate  # a schedule: evaluated once, not per variable
        for variable in variables:
            if self._use_weight_decay(variable):
                v = variable.value if isinstance(variable, keras.Variable) else variable
                v.assign_sub(v * tf.cast(self.weight_decay, v.dtype) * tf.cast(learning_rate, v.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fusable() or any(isinstance(g, tf.IndexedSlices) for g in grads):  # (tf: fusable)
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        for grad, variable in zip(grads, trainable_variables):
            v = variable.value if isinstance(variable, keras.Variable) else variable
            m = self.momentums[self._get_variable_index(variable)]
            # accum = momentum * accum - lr * grad; var += accum (Nesterov: momentum * accum - lr * grad),
            # exactly Keras's SGD update.
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=v.handle,
                accum=m.value.handle,
                lr=tf.cast(learning_rate, v.dtype),
                grad=tf.cast(grad, v.dtype),
                momentum=tf.cast(self.momentum, v.dtype),
                use_nesterov=self.nesterov,
            )
