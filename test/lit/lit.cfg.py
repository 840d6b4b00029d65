# lit configuration for alpa-mlir's regression tests.
# lit does not pass the caller's environment through, so everything the tools need
# (the tool directory on PATH, 8 fake CPU devices) is set here.
import os
import sys

import lit.formats

config.name = "alpa-mlir"  # noqa: F821 (lit injects `config`)
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir", ".test"]  # noqa: F821
config.excludes = ["Inputs", "Output", "lit.cfg.py"]  # noqa: F821
config.test_source_root = os.path.dirname(__file__)  # noqa: F821
config.test_exec_root = os.path.join(os.path.dirname(__file__), "Output")  # noqa: F821

tool_dir = os.path.dirname(sys.executable)  # the venv's bin: alpa-opt, filecheck, ...
config.environment["PATH"] = os.pathsep.join(  # noqa: F821
    [tool_dir, os.environ.get("PATH", "/usr/bin:/bin")]
)
config.environment["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"  # noqa: F821
config.environment["JAX_PLATFORMS"] = "cpu"  # noqa: F821
config.environment["PYTHONUNBUFFERED"] = "1"  # noqa: F821
config.environment["TF_CPP_MIN_LOG_LEVEL"] = "3"  # noqa: F821
config.substitutions.append(("%python", sys.executable))  # noqa: F821
config.substitutions.append(("%inputs", os.path.join(os.path.dirname(__file__), "Inputs")))  # noqa: F821
