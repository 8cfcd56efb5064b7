"""User-facing errors: the CLI prints them as one line and exits 2 (no traceback)."""


class EdgekdError(Exception):
    """An error caused by the user's input (a file, a config, a flag): say what and what to do."""


class AudioError(EdgekdError):
    """An audio file that cannot be used; `path` names it, `reason` is a short machine-readable tag."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


class ManifestError(EdgekdError):
    """A malformed record; the message names the record id (or line) and the field."""


class ConfigError(EdgekdError):
    """An unknown key, a wrong type, or conflicting options in a config."""
