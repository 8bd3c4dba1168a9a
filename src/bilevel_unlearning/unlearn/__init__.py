"""Unlearning: forget/retain losses, gradient combination rules and the training loop."""
