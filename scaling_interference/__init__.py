"""scaling_interference: which tasks a model of a given size learns, and why."""
from scaling_interference.run import Run, load_run
from scaling_interference.sweep.loop import train

__all__ = ["Run", "load_run", "train"]
__version__ = "0.1.0"
