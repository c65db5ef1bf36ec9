"""jobhooks.toml: its schema, and reading it with every problem located."""

from jobhooks.config.load import read_config
from jobhooks.config.schema import JobhooksConfig

__all__ = ["JobhooksConfig", "read_config"]
