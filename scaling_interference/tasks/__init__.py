"""Task families. Importing this package registers the built-in ones."""

from scaling_interference.tasks import regression, sparse_parity  # noqa: F401  (registers families)
from scaling_interference.tasks.base import FAMILIES, Batch, Family, TaskInfo, family_class, make_family, register

__all__ = ["FAMILIES", "Batch", "Family", "TaskInfo", "family_class", "make_family", "register"]
