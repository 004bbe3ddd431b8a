"""Errors that are the user's to fix: the commands print them without a traceback."""


class InputError(ValueError):
    """Bad input (a recipe, a table, a folder).

    The message names what is wrong and where (file, row, column or key) and what was expected.
    """


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite: training stops before the weights change, and
    the last checkpoint (written at the end of the previous epoch) is the last good state."""


class Stopped(Exception):
    """A run stopped by SIGTERM or SIGUSR1 after writing its checkpoint; the command exits with
    `status` (128 + the signal) so that a scheduler sees how it ended."""

    def __init__(self, status: int) -> None:
        super().__init__(f"stopped by a signal (exit status {status})")
        self.status = status
