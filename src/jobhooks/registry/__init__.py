"""Which handler types exist and which registrations run for a job type."""

from jobhooks.registry.build import LoadedConfig, build_registry, load, load_for_serving
from jobhooks.registry.matching import DeliveryPolicy, RegisteredHandler, Registry, WhenRules

__all__ = [
    "DeliveryPolicy",
    "LoadedConfig",
    "RegisteredHandler",
    "Registry",
    "WhenRules",
    "build_registry",
    "load",
    "load_for_serving",
]
