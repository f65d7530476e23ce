"""The error every entry point reports as one line (`error: ...`, exit 2) instead of a traceback.

Raise a subclass for bad user input (a config field, a file and line, an override): its
message names what is wrong and what was expected.
"""


class InputError(ValueError):
    pass
