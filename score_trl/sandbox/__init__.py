"""The code sandbox: model-written Python in an isolated, bounded process tree, and a trusted test runner beside it.

Nothing here knows about training: `score_trl.rewards` builds the code reward on top of it. Standard library only,
so that it can be audited (and tested) on its own. docs/rewards.md has the threat model.
"""

from .config import SandboxConfig, SandboxError, SandboxResult
from .process import FailedTest, first_failure, run_python, run_tests


__all__ = ["FailedTest", "SandboxConfig", "SandboxError", "SandboxResult", "first_failure", "run_python", "run_tests"]
