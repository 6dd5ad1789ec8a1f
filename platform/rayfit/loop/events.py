"""Loop events. Each value is the name of the Callback method the loop calls for it."""

from enum import Enum


class Event(str, Enum):
    TRAIN_BEGIN = "on_train_begin"
    EPOCH_BEGIN = "on_epoch_begin"
    BATCH_BEGIN = "on_batch_begin"
    BATCH_END = "on_batch_end"
    VALIDATION_BEGIN = "on_validation_begin"
    VALIDATION_END = "on_validation_end"
    EPOCH_END = "on_epoch_end"
    TRAIN_END = "on_train_end"
    EXCEPTION = "on_exception"
