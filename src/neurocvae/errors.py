"""Errors that are the user's to fix: the commands print them without a traceback."""


class InputError(ValueError):
    """Bad input (a recipe, a table, a folder).

    The message names what is wrong and where (file, row, column or key) and what was expected.
    """
