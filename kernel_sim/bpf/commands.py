"""Imports every module that registers bpf() command handlers, so booting a kernel has them all."""

from . import bpffs, btf, links, map_cmds, objinfo, prog  # noqa: F401
from . import engine as _engine  # noqa: F401  (installs prog.BUILD_ENGINE: verifier + VM)
from . import raw_tp as _raw_tp  # noqa: F401  (BPF_RAW_TRACEPOINT_OPEN)
from . import test_run as _test_run  # noqa: F401  (BPF_PROG_TEST_RUN)
