"""Chat prompts on tiny GGUFs whose vocabularies hold the templates' control tokens: the tokens
every model reads are checked, not the text. A rendered prompt is read as llama.cpp's server
reads it: each control token one id, BOS once; `n_prompt_tokens` in the JSON counts them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ggflip.backends.fake import FAKE_VOCAB, FakeBackendFactory, FakeModel
from ggflip.backends.llama import LlamaBackend
from ggflip.cli.main import main
from ggflip.config.models_toml import LlamaSettings, ModelSet
from ggflip.generate.baseline import chat_tokens
from ggflip.generate.engine import run_generation
from ggflip.generate.events import GenFinished
from ggflip.generate.spec import GenSpec, render_chat
from ggflip.tasks.generation import GEN_TASKS, GenItem
from tests.tiny_gguf import CHAT_CONTROLS, CHAT_VOCAB, write_tiny_gguf

# SmolLM2-Instruct's ChatML template (a default system message when none is given).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma 3's instruct template (gemma-3-*-it), its multimodal branch left out.
GEMMA = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n    {%- set loop_messages = messages -%}\n'
    "{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/'
    'assistant/...") }}\n    {%- endif -%}\n'
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n    {%- else -%}\n'
    "        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)
# Meta-Llama-3-8B-Instruct's template.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ONE_TURN = [{"role": "user", "content": "What is the"}]
TWO_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the"},
    {"role": "assistant", "content": "the of"},
    {"role": "user", "content": "Which is"},
]
# The rendered prompts, written out by hand from each template.
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"  # noqa: E501
RENDERED = {
    ("chatml", 1): SMOL_SYSTEM + "<|im_start|>user\nWhat is the<|im_end|>\n<|im_start|>assistant\n",
    ("chatml", 2): "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the"
    "<|im_end|>\n<|im_start|>assistant\nthe of<|im_end|>\n<|im_start|>user\nWhich is<|im_end|>\n"
    "<|im_start|>assistant\n",
    ("gemma", 1): "<s><start_of_turn>user\nWhat is the<end_of_turn>\n<start_of_turn>model\n",
    ("gemma", 2): "<s><start_of_turn>user\nBe brief.\n\nWhat is the<end_of_turn>\n"
    "<start_of_turn>model\nthe of<end_of_turn>\n<start_of_turn>user\nWhich is<end_of_turn>\n"
    "<start_of_turn>model\n",
    ("llama3", 1): "<s><|start_header_id|>user<|end_header_id|>\n\nWhat is the<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ("llama3", 2): "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is the<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nthe of<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhich is<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
}
TEMPLATES = {"chatml": CHATML, "gemma": GEMMA, "llama3": LLAMA3}
BOS = CHAT_VOCAB.index("<s>")
_SPECIALS = re.compile("(" + "|".join(re.escape(c) for c in (*CHAT_CONTROLS, "<s>")) + ")")


def reference_tokens(backend: LlamaBackend, text: str) -> list[int]:
    """llama.cpp's reading of a rendered prompt, rebuilt from its parts: BOS, then each control
    token's text as its id from the vocabulary list and the plain text between them tokenized
    on its own without special parsing; a leading `<s>` is the BOS itself."""
    ids = [BOS]
    for index, part in enumerate(_SPECIALS.split(text.removeprefix("<s>"))):
        if index % 2:
            ids.append(CHAT_VOCAB.index(part))
        elif part:
            ids += backend.tokenize(part, add_bos=False, special=False)
    return ids


@pytest.fixture(scope="module")
def chat_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("chat")
    return {
        name: write_tiny_gguf(folder / f"{name}.gguf", vocab=CHAT_VOCAB, chat_template=template)
        for name, template in TEMPLATES.items()
    }


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("turns", [1, 2])
def test_control_tokens_are_single_ids_and_bos_is_there_once(
    name: str, turns: int, chat_models: dict[str, Path]
) -> None:
    backend = LlamaBackend(chat_models[name], LlamaSettings(n_ctx=256, n_threads=1))
    try:
        template = backend.chat_template()
        assert template is not None
        messages = ONE_TURN if turns == 1 else TWO_TURNS
        bos, eos = backend.special_token("bos"), backend.special_token("eos")
        text = render_chat(template, messages, bos, eos, name)
        assert text == RENDERED[(name, turns)]
        tokens = list(chat_tokens(backend, text))
        assert tokens == reference_tokens(backend, text)
        assert tokens.count(BOS) == 1 and tokens[0] == BOS
        for control in CHAT_CONTROLS:
            assert tokens.count(CHAT_VOCAB.index(control)) == text.count(control)
        # Read as plain characters (the old way), every control token is several tokens.
        plain = backend.tokenize(text.removeprefix(bos), add_bos=True, special=False)
        assert len(plain) > len(tokens) + 5 * sum(text.count(c) for c in CHAT_CONTROLS)
    finally:
        backend.close()


def test_a_one_turn_chatml_prompt_by_hand(chat_models: dict[str, Path]) -> None:
    """One ChatML prompt spelled out token by token from the vocabulary list."""
    backend = LlamaBackend(chat_models["chatml"], LlamaSettings(n_ctx=256, n_threads=1))
    try:
        text = "<|im_start|>user\nis<|im_end|>\n<|im_start|>assistant\n"
        start, end = CHAT_VOCAB.index("<|im_start|>"), CHAT_VOCAB.index("<|im_end|>")
        newline = CHAT_VOCAB.index("<0x0A>")

        def pieces(*texts: str) -> list[int]:
            return [CHAT_VOCAB.index(t) for t in texts]

        # SentencePiece merges "is" and "an" (vocabulary pieces), no other pair of these letters.
        expected = [BOS, start, *pieces("u", "s", "e", "r"), newline, *pieces("is"), end, newline]
        expected += [start, *pieces("a", "s", "s", "is", "t", "an", "t"), newline]
        assert list(chat_tokens(backend, text)) == expected
    finally:
        backend.close()


def test_n_prompt_tokens_in_the_json_counts_the_parsed_prompt(
    tmp_path: Path, chat_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A two-turn run through Gemma's template: each row's `n_prompt_tokens` equals the count
    of the prompt rebuilt from the template by hand (turn 2 after the baseline's answer)."""
    base = chat_models["gemma"]
    quant = write_tiny_gguf(
        tmp_path / "q.gguf", vocab=CHAT_VOCAB, chat_template=GEMMA, weight_noise=0.05
    )
    models = tmp_path / "models.toml"
    models.write_text(
        "[llama]\nn_ctx = 256\nn_batch = 256\nn_threads = 1\n\n[sets.chat]\n"
        f'baseline = {{ path = "{base}", label = "F32" }}\n'
        f'quants = [{{ path = "{quant}", label = "noisy" }}]\n'
    )
    data = tmp_path / "question.jsonl"
    questions = [("a", ["What is the", "Which is"]), ("b", ["is the of", "What"])]
    data.write_text(
        "".join(json.dumps({"question_id": q, "turns": t}) + "\n" for q, t in questions)
    )
    args = ["run", "--models", str(models), "--task", "mt_bench", "--data", str(data)]
    assert main([*args, "--max-new-tokens", "6", "--no-cache", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["quants"][0]["rows"]
    assert len(rows) == 4
    answers = {(row["id"], row["turn"]): row["base_text"] for row in rows}
    backend = LlamaBackend(base, LlamaSettings(n_ctx=256, n_threads=1))
    try:
        for row in rows:
            turns = dict(questions)[row["id"]]
            text = f"<s><start_of_turn>user\n{turns[0]}<end_of_turn>\n<start_of_turn>model\n"
            if row["turn"] == 1:
                answer = answers[(row["id"], 0)].strip()
                text += f"{answer}<end_of_turn>\n<start_of_turn>user\n{turns[1]}<end_of_turn>\n"
                text += "<start_of_turn>model\n"
            assert row["n_prompt_tokens"] == len(reference_tokens(backend, text))
    finally:
        backend.close()


def test_special_text_inside_a_message_is_parsed_as_the_server_does(
    chat_models: dict[str, Path],
) -> None:
    """A user's own `<|im_end|>` becomes the control token (llama.cpp's server reads the whole
    rendered prompt with specials parsed); outside a chat prompt it stays characters."""
    backend = LlamaBackend(chat_models["chatml"], LlamaSettings(n_ctx=256, n_threads=1))
    try:
        end = CHAT_VOCAB.index("<|im_end|>")
        text = "<|im_start|>user\nis<|im_end|>the<|im_end|>\n<|im_start|>assistant\n"
        assert list(chat_tokens(backend, text)).count(end) == 2
        assert end not in backend.tokenize("is<|im_end|>the", add_bos=True, special=False)
    finally:
        backend.close()


def test_the_fake_backend_counts_chat_prompts_the_same_way(fake_set: ModelSet) -> None:
    """On the fake backend a template's `<...>` pieces are single ids and BOS appears once:
    each turn's `n_prompt_tokens` is 1 (BOS) + 2 per message + its words."""
    template = "{{ bos_token }}{% for m in messages %}<t>{{ m['content'] }}<e>{% endfor %}"
    vocab = (*FAKE_VOCAB, "<t>", "<e>")
    factory = FakeBackendFactory(
        {
            "/m/f16.gguf": FakeModel(vocab=vocab, chat_template=template),
            "/m/q8.gguf": FakeModel(noise=0.05, vocab=vocab, chat_template=template),
            "/m/q2.gguf": FakeModel(noise=0.6, vocab=vocab, chat_template=template),
        }
    )
    items = (GenItem("a", ("w1 w2 w3",)), GenItem("b", ("w4",)))
    spec = GenSpec(fake_set, GEN_TASKS["prompts"], items, "test", chat=True, max_new_tokens=3)
    events = list(run_generation(spec, factory))
    assert isinstance(events[-1], GenFinished)
    rows = json.loads(events[-1].report.to_json())["quants"][0]["rows"]
    assert [row["n_prompt_tokens"] for row in rows] == [1 + 2 + 3, 1 + 2 + 1]
