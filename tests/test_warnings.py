"""The suite's warning filters (setup.cfg): a DeprecationWarning raised from the project's own modules is an
error, one raised inside a dependency is not."""

import warnings

import pytest


@pytest.mark.parametrize("module", ["scaling_interference.sweep.loop", "launch.train", "analysis.summary"])
def test_a_deprecation_from_our_code_fails(module):
  with pytest.raises(DeprecationWarning):
    warnings.warn_explicit("old API", DeprecationWarning, "somewhere.py", 1, module=module)


def test_a_deprecation_inside_a_dependency_only_warns():
  with pytest.warns(DeprecationWarning):
    warnings.warn_explicit("old API", DeprecationWarning, "somewhere.py", 1, module="pandas.core.frame")
