"""Errors that are the user's to fix: the commands print them without a traceback."""


class InputError(ValueError):
    """Bad input (a recipe, a table, a folder).

    The message names what is wrong and where (file, row, column or key) and what was expected.
    """


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite: training stops before the weights change, and
    the last checkpoint (written at the end of the previous epoch) is the last good state."""
