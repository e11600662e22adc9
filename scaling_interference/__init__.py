"""scaling_interference: which tasks a model of a given size learns, and why."""
from scaling_interference.reader import Run, load_run
from scaling_interference.sweep.build import build
from scaling_interference.sweep.loop import train

__all__ = ["Run", "build", "load_run", "train"]
__version__ = "0.1.0"
