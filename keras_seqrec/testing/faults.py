"""Fault injection for tests: a real `kill -9` of the training process at a chosen step."""

from __future__ import annotations

import os
import signal

import keras


class SigkillAt(keras.callbacks.Callback):
    """Sends SIGKILL to this process after training batch `batch` of epoch `epoch` (0-based).

    Nothing is flushed or cleaned up, exactly as when the machine kills the job: use it in a
    subprocess to check that a run resumes faithfully (`fit_recommender(checkpoint_dir=...)`).
    """

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.kill_epoch, self.kill_batch = int(epoch), int(batch)
        self._epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == self.kill_epoch and batch == self.kill_batch:
            os.kill(os.getpid(), signal.SIGKILL)
