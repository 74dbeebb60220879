"""Fixtures for the cross-package end-to-end tests (see :mod:`turnout.testing`)."""

from turnout.testing.pytest_plugin import *  # noqa: F403
