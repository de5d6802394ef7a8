"""Activations: aFRR setpoints and DSO limits in, what the dispatcher did and what the pool delivered out."""
