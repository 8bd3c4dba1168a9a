"""BLUR reproduction library: benchmarks, models, unlearning and evaluation.

The Snakemake workflow under workflow/ calls the command line in ``bilevel_unlearning.cli``;
every command can also be run by hand on a cluster node.
"""

__version__ = "0.1.0"
