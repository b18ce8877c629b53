"""What trainlint knows about the Python standard library: values that differ between the
processes of one job (the clock, the process id, the operating system's randomness)."""

from __future__ import annotations

# Calls whose result differs from one process to the next, even when started together.
PER_PROCESS_VALUES = frozenset(
    {"time.time", "time.time_ns", "time.perf_counter", "time.perf_counter_ns", "time.monotonic", "time.monotonic_ns",
     "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.now", "os.getpid", "os.urandom",
     "secrets.randbits", "secrets.randbelow", "uuid.uuid4"}
)
# ``os.environ[...]`` / ``os.getenv(...)``: environment readers.
ENVIRONMENT = frozenset({"os.environ"})
ENVIRONMENT_GETTERS = frozenset({"os.getenv", "os.environ.get"})
