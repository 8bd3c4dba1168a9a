"""Robustness attacks on an unlearned model: relearning on forget data, weight quantization."""
