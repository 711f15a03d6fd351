"""The one base class of "the user's input cannot be used" errors.

Every error the project raises about something a user supplied -- a file
(DICOM, .inv3, actions JSON, preference store), a config value or a polygon
-- derives from ``InputError``, and its message names the file, config key
or polygon. ``launch.py`` prints such an error as one line (``error: ...``)
and exits with status 2; any other exception is a bug and keeps its
traceback. ``InputError`` is a ``ValueError``, so ``except ValueError`` code
keeps working.
"""


class InputError(ValueError):
  """Unusable user input; the message names the file, key or polygon."""


class ConfigError(InputError):
  """A config value that cannot be used; the message names the key."""
