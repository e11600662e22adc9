"""Mixtures, schedules and data streams."""

from scaling_interference.data.mixture import Mixture

__all__ = ["Mixture"]
