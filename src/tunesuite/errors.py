"""The one exception type for problems with a user's input."""


class TunesuiteError(Exception):
    """Bad input (flag, file, column, value). Entry points print it as one `error:` line and exit 2."""
