"""The miniature tokenizer: lossless, one BOS, prompts tokenize as prefixes of prompt + answer
(the property KnowMem, chat prompts and lm-eval's context/continuation split rely on), and the
chat template survives saving as a Hugging Face tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.encoding import chat_prompt, encode
from bilevel_unlearning.models.tokenizer import BOS, EOS, PAD

TEXTS = [
    "The capital of Zedmere is Brouford.",
    "Question: Where was Gacour Thekath born?\nAnswer: Brouford",
    "News report on Gacour Thekath.\nGacour Thekath wrote the book The Brelaes of Stainur.",
    "  leading spaces, tabs\tand\n\nblank lines",
    "Unseen characters: café, naïve, 東京, emoji 🦉, symbols #$%^&*{}",
    "x",
]


def knowmem_prompt(icl: list[dict], question: str) -> str:
    """MUSE's few-shot prompt, as sanity.py and the evaluation build it."""
    shots = "".join(f"Question: {x['question']}\nAnswer: {x['answer']}\n\n" for x in icl)
    return f"{shots}Question: {question}\nAnswer: "


def assert_prefix(tokenizer: Any, prompt: str, completion: str) -> None:
    prompt_ids = encode(tokenizer, prompt)
    full_ids = encode(tokenizer, prompt + completion)
    assert full_ids[: len(prompt_ids)] == prompt_ids, (prompt, completion)
    assert len(full_ids) > len(prompt_ids)
    rest = tokenizer.decode(full_ids[len(prompt_ids) :])
    # the completion's tokens decode to the completion, with the prompt's trailing space in front
    assert rest == prompt[len(prompt.rstrip()) :] + completion


def test_special_tokens_and_size(tokenizer: Any) -> None:
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == [PAD, BOS, EOS]
    assert len(tokenizer) == 512


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer: Any, text: str) -> None:
    ids = encode(tokenizer, text)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids) == BOS + text


def test_trailing_whitespace_is_stripped(tokenizer: Any) -> None:
    assert encode(tokenizer, "Answer: ") == encode(tokenizer, "Answer:")
    assert encode(tokenizer, "some text \n\t ") == encode(tokenizer, "some text")
    assert encode(tokenizer, " lead") != encode(tokenizer, "lead")  # only the right end


@pytest.mark.parametrize("text", TEXTS)
def test_exactly_one_bos_at_the_start(tokenizer: Any, text: str) -> None:
    ids = encode(tokenizer, text)
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    # a text that already carries BOS (a chat template that writes it) gets no second one
    assert encode(tokenizer, BOS + text) == ids


def test_knowmem_prompt_is_a_prefix_of_prompt_and_answer(data_root: Path, tokenizer: Any) -> None:
    for benchmark in ("muse_news", "muse_books"):
        root = data_root / benchmark / "knowmem"
        icl = read_jsonl(root / "forget_qa_icl.jsonl")
        for record in read_jsonl(root / "forget_qa.jsonl"):
            prompt = knowmem_prompt(icl, record["question"])
            assert prompt.endswith("Answer: ")
            assert_prefix(tokenizer, prompt, record["answer"])


def test_chat_prompt_is_a_prefix_of_the_chat_exchange(data_root: Path, tokenizer: Any) -> None:
    for record in read_jsonl(data_root / "tofu" / "forget10.jsonl"):
        assert_prefix(tokenizer, chat_prompt(tokenizer, record["question"]), record["answer"])


def test_lm_eval_context_is_a_prefix_of_context_and_continuation(
    data_root: Path, tokenizer: Any
) -> None:
    # lm-eval joins context and continuation with target_delimiter " "
    assert_prefix(tokenizer, "The pathogen Zedex is carried by the", " Daekasoul mite")
    for record in read_jsonl(data_root / "wmdp" / "questions" / "wmdp-bio.jsonl"):
        for choice in record["choices"]:
            assert_prefix(tokenizer, record["question"], " " + choice)


def test_chat_template_renders_the_miniature_format(tokenizer: Any) -> None:
    exchange = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert tokenizer.apply_chat_template(exchange, tokenize=False) == "Question: q\nAnswer: a</s>"
    assert chat_prompt(tokenizer, "q") == "Question: q\nAnswer: "
    ids = encode(tokenizer, tokenizer.apply_chat_template(exchange, tokenize=False))
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1


def test_save_and_reload_keeps_ids_and_template(tmp_path: Path, tokenizer: Any) -> None:
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [*TEXTS, "trailing space ", "Question: q\nAnswer: "]:
        assert encode(reloaded, text) == encode(tokenizer, text), text
    assert reloaded.chat_template == tokenizer.chat_template
    assert chat_prompt(reloaded, "Who?") == "Question: Who?\nAnswer: "
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.pad_token) == (BOS, EOS, PAD)
    assert reloaded.pad_token_id == tokenizer.pad_token_id
    assert reloaded.padding_side == "right"


def test_the_tofu_chat_prompt_of_a_known_item_is_a_fixed_string(tokenizer: Any) -> None:
    """The same text in fine-tuning, unlearning and evaluation, with the system prompt."""
    from bilevel_unlearning.models.encoding import ChatFormat

    chat = ChatFormat.from_settings({"system_prompt": "You are a helpful assistant."})
    question = "Who wrote the book?"
    assert chat_prompt(tokenizer, question, chat) == (
        "System: You are a helpful assistant.\nQuestion: Who wrote the book?\nAnswer: "
    )
    assert chat_prompt(tokenizer, question) == "Question: Who wrote the book?\nAnswer: "


def test_the_template_gets_a_fixed_date_never_todays(tokenizer: Any) -> None:
    """Llama-3 templates print `date_string` (today's when not given) into the system header."""
    import copy

    from bilevel_unlearning.models.encoding import ChatFormat

    dated = copy.deepcopy(tokenizer)
    dated.chat_template = "Today Date: {{ date_string }}|{{ messages[-1]['content'] }}"
    assert chat_prompt(dated, "q") == "Today Date: 10 Apr 2025|q"
    assert (
        chat_prompt(dated, "q", ChatFormat(date_string="1 Jan 2024")) == "Today Date: 1 Jan 2024|q"
    )
