"""How an epoch's batches are cut and paired: the global batch over processes, retain partners."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from unlearn_fixtures import data

from bilevel_unlearning.runtime import batch_layout
from bilevel_unlearning.unlearn.data import epoch_steps, stream_chunks, wmdp_data


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


# ---------------------------------------------------------------- corpus forms, hand-made corpus


def char_tokenizer() -> Any:
    """A real Hugging Face tokenizer whose tokens are single characters (BPE without merges),
    so the expected chunks of a hand-made corpus can be written out."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    chars = ["{", "}", '"', ":", " ", "\n", "a", "b", "c", "d", "e", "t", "x"]
    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # BOS added as Llama's tokenizers add it (their post-processor)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def ids(tokenizer: Any, text: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(c) for c in text]


def test_muse_authors_form_joins_documents_by_a_blank_line_and_fills_the_last_chunk() -> None:
    """MUSE's dataset.py: one stream ("ab" + "\\n\\n" + "cde"), BOS + 3 tokens per chunk, the
    short last chunk filled from the first chunk, BOS included; never an EOS."""
    tok = char_tokenizer()
    bos, eos = tok.bos_token_id, tok.eos_token_id
    chunks = [list(e.input_ids) for e in stream_chunks(tok, ["ab", "cde"], 4, "authors")]
    assert chunks == [
        [bos, *ids(tok, "ab\n")],
        [bos, *ids(tok, "\ncd")],
        [bos, *ids(tok, "e"), bos, *ids(tok, "a")],
    ]
    documents = [list(e.input_ids) for e in stream_chunks(tok, ["ab", "cde"], 4, "documents")]
    assert documents == [[bos, *ids(tok, "ab"), eos], [bos, *ids(tok, "cde")]]  # [bos, eos] dropped


def test_wmdp_authors_form_feeds_raw_lines_in_file_order_paired_with_retain_by_index(
    tmp_path: Path,
) -> None:
    """The BLUR authors' RMU (rmu/utils.py, unlearn_bi.py): each corpus line as it stands (the
    raw JSON, its newline included), BOS and no EOS, truncated; batches of each topic in file
    order, interleaved bio, cyber, bio; the retain batch of batch b is the wikitext batch b."""
    tok = char_tokenizer()
    bos = tok.bos_token_id
    lines = {"bio": ['{"t": "ab"}', '{"t": "c"}', "", '{"t": "d"}'], "cyber": ['{"t": "e"}']}
    for topic, rows in lines.items():
        path = tmp_path / f"corpora/{topic}-forget-corpus.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(r + "\n" for r in rows))
    wikitext = tmp_path / "wikitext/wikitext-2-raw-v1-test.jsonl"
    wikitext.parent.mkdir(parents=True)
    wikitext.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a", " ", "bb", "c"]))
    data = wmdp_data(tok, tmp_path, ["bio", "cyber"], {"bio": 6, "cyber": 20}, 2, "authors")
    assert [list(e.input_ids) for e in data.forget[0]] == [
        [bos, *ids(tok, '{"t":')],  # cut at 6 tokens
        [bos, *ids(tok, '{"t":')],
        [bos, *ids(tok, '{"t":')],
    ]
    assert list(data.forget[1][0].input_ids) == [bos, *ids(tok, '{"t": "e"}\n')]
    assert [list(e.input_ids) for e in data.retain] == [
        [bos, *ids(tok, "a")],
        [bos, *ids(tok, "b")],
        [bos, *ids(tok, "c")],
    ]
    layout = batch_layout(2, 1, None)
    steps = epoch_steps(data, layout, torch.Generator().manual_seed(0), with_retain=True)
    first = [[s.forget["input_ids"].shape[0], s.topic] for step in steps for s in step]
    assert first == [[2, 0], [1, 1], [1, 0]]  # bio 0-1, cyber 0, bio 2
    assert torch.equal(steps[2][0].retain["input_ids"][0], torch.tensor([bos, *ids(tok, "c")]))
    # the same in any epoch and with any seed: file order
    again = epoch_steps(data, layout, torch.Generator().manual_seed(9), with_retain=True)
    assert all(
        torch.equal(a[0].forget["input_ids"], b[0].forget["input_ids"])
        for a, b in zip(steps, again, strict=True)
    )
