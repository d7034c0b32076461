"""Vendor mock servers for tests, benchmarks and the embedded demo.

``outputs.mocks.server`` holds the shared base (threaded HTTP(S) server with TLS/mTLS, scheduled
faults, control endpoints); each vendor module holds one ``MockApp``. Run one with
``python -m outputs.mocks <kind>``.
"""

from outputs.mocks.server import (
    Fault,
    FaultSchedule,
    MockApp,
    MockRequest,
    MockResponse,
    MockServer,
)

__all__ = ["Fault", "FaultSchedule", "MockApp", "MockRequest", "MockResponse", "MockServer"]
