"""Which handler types exist and which registrations run for a job type."""

from jobhooks.registry.build import LoadedConfig, build_registry, load, load_for_serving
from jobhooks.registry.matching import (
    DeliveryPolicy,
    RegisteredHandler,
    RegistrationProblem,
    Registry,
    WhenRules,
)

__all__ = [
    "DeliveryPolicy",
    "LoadedConfig",
    "RegisteredHandler",
    "RegistrationProblem",
    "Registry",
    "WhenRules",
    "build_registry",
    "load",
    "load_for_serving",
]
