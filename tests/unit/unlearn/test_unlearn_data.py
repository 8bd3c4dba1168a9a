"""How an epoch's batches are cut and paired: the global batch over processes, retain partners."""

from __future__ import annotations

import dataclasses

import torch
from unlearn_fixtures import data

from bilevel_unlearning.runtime import batch_layout
from bilevel_unlearning.unlearn.data import epoch_steps


def retain_rows(steps: list, example_count: int = 8) -> list[tuple[int, ...]]:
    """The retain sequences of every micro-batch, in order, as tuples of token ids."""
    return [
        tuple(row)
        for group in steps
        for micro in group
        for row in micro.retain["input_ids"].tolist()
    ]


def epoch(pairing: str, seed: int, epoch_number: int, processes: int = 1, rank: int = 0):
    unlearn_data = dataclasses.replace(data(forget_examples=6), retain_pairing=pairing)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch_number)
    return epoch_steps(unlearn_data, batch_layout(2, processes), generator, True, rank=rank)


def test_tofu_pairs_each_epoch_with_a_fresh_seeded_permutation_of_the_whole_retain_set() -> None:
    retain = {tuple(e.input_ids) for e in data().retain}
    first, second = retain_rows(epoch("permutation", 0, 1)), retain_rows(epoch("permutation", 0, 2))
    assert len(set(first)) == len(first) == 6 and set(first) <= retain  # no retain item twice
    assert first != second  # a fresh permutation each epoch
    assert first == retain_rows(epoch("permutation", 0, 1))  # same seed, same pairing
    # the index pairing (MUSE) only ever uses the first len(forget) retain items
    assert retain_rows(epoch("index", 0, 1)) != first


def test_the_processes_of_a_global_batch_split_it_and_keep_its_pairing() -> None:
    single = epoch("permutation", 3, 1)
    halves = [epoch("permutation", 3, 1, processes=2, rank=r) for r in (0, 1)]
    for step, (a, b) in enumerate(zip(*halves, strict=True)):
        together = torch.cat([a[0].retain["input_ids"], b[0].retain["input_ids"]])
        assert torch.equal(together, single[step][0].retain["input_ids"])
        forget = torch.cat([a[0].forget["input_ids"], b[0].forget["input_ids"]])
        assert torch.equal(forget, single[step][0].forget["input_ids"])
