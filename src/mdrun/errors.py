"""The one exception type that the entry point reports as a message, without a traceback."""


class MdrunError(Exception):
    """Invalid input or environment: a missing file, an unknown name, an impossible forget set.

    The message names the file, value or record at fault and what to do instead.
    """
