"""Task families. Importing this package registers the built-in ones."""
from scaling_interference.tasks.base import Batch, Family, TaskInfo, FAMILIES, family_class, make_family, register
from scaling_interference.tasks import regression, sparse_parity  # noqa: F401  (registers families)
