"""Convergence experiment: a family of small SchNet-style MLIPs trained on QM9 at growing data and epochs.

Each checkpoint becomes a model of the zoo, so alignment can be tracked as energy error falls.
"""
