"""The schemathesis hooks test_openapi.py names (SCHEMATHESIS_HOOKS=tests.fuzz_hooks): importing the bench's
module registers them, so `make test` and `make fuzz` fuzz with the same payloads."""

from crossdeploy.bench import fuzz_hooks  # noqa: F401  (registers the hooks on import)
