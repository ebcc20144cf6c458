"""User-facing failures: one clear sentence saying what is wrong and what to do."""


class ShoalError(Exception):
    """A failure the CLI reports as one line on stderr with a non-zero exit."""


class ConfigError(ShoalError):
    """The configuration file is missing, unreadable or invalid."""


class PluginError(ShoalError):
    """A plugin named in the configuration is missing or failed to load."""
