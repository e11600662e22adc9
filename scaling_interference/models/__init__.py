"""Model definitions: shapes that build, apply and count themselves."""

from scaling_interference.models.mlp import ACTIVATIONS, MLP, MLPDef

__all__ = ["ACTIVATIONS", "MLP", "MLPDef"]
