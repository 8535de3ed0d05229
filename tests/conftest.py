"""Test set-up: 8 simulated CPU devices (for sharding tests) before JAX is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# libtpu (a dev requirement: tests compile for TPU topologies) asks the GCE metadata server about the local
# TPU at start-up unless told not to; tests stay on 127.0.0.1. Its one-process lock file would keep test workers
# (and a plan running beside the tests) from compiling side by side; compile-only devices need no lock.
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
