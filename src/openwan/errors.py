"""User-facing exceptions.

Every error a user can cause (bad sizes, missing files, wrong checkpoint) raises one of these with a
message that says what was wrong and what to do; asserts are kept for internal invariants only.
"""


class OpenWanError(Exception):
    """Base class of all errors openwan raises for bad input or bad files."""


class InputError(OpenWanError, ValueError):
    """An argument (size, frame count, prompt, path) is invalid."""


class CheckpointError(OpenWanError):
    """A checkpoint is missing, has the wrong layout, or its tensors do not match the model."""


class NumericalError(OpenWanError, FloatingPointError):
    """NaN or inf appeared during sampling or decoding."""
