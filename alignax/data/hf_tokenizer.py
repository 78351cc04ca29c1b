"""The tokenizer of a Hugging Face checkpoint, from its own files, with its chat template.

    tokenizer = HFTokenizer.load("path/to/checkpoint")
    ids = tokenizer.encode("Hello")                     # no BOS/EOS added (alignax convention)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    prompt_ids = tokenizer.encode_chat([{"role": "user", "content": "Hi"}])

Reads tokenizer.json with the `tokenizers` library (a requirements-test.txt dependency; imported
here only when a checkpoint's tokenizer is loaded), the special tokens from tokenizer_config.json
/ special_tokens_map.json, and the chat template from tokenizer_config.json, chat_template.jinja
or chat_template.json. Templates are rendered with jinja2 the way transformers does (sandboxed,
trim_blocks, lstrip_blocks, `raise_exception`, a `tojson` filter), and the rendered text is
encoded without adding special tokens (the template writes them), so `encode_chat` gives the ids
of `transformers`' `apply_chat_template(..., tokenize=True)`.

Special ids: the checkpoint's own (not alignax's built-in 0/1/2). A checkpoint without a pad token
pads with its EOS id and one without a BOS token (Qwen2) uses EOS as BOS, as GPT-2 does; padding
is masked, so the pad id never reaches a loss.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tokenizers


def _token_text(value: Any) -> str | None:
    """A special token as stored: a string, or a serialised AddedToken {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _chat_template(directory: Path, tokenizer_config: dict) -> str | None:
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text()
    template = _read_json(directory / "chat_template.json").get("chat_template")
    template = template or tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        named = {t["name"]: t["template"] for t in template}
        template = named.get("default")
    return template


class HFTokenizer:
    """A `tokenizers.Tokenizer` with the checkpoint's special tokens and chat template.

    Satisfies alignax's `Tokenizer` protocol (`pad_id`, `bos_id`, `eos_id`, `vocab_size`,
    `encode`, `decode`).
    """

    def __init__(
        self,
        tokenizer,
        *,
        special_tokens: dict[str, str | None],
        chat_template: str | None = None,
    ):
        self._tokenizer = tokenizer
        self.special_tokens = dict(special_tokens)
        self.chat_template = chat_template

        def token_id(name: str) -> int | None:
            text = self.special_tokens.get(name)
            if text is None:
                return None
            found = tokenizer.token_to_id(text)
            if found is None:
                raise ValueError(f"special token {name}={text!r} is not in the vocabulary")
            return int(found)

        eos = token_id("eos_token")
        if eos is None:
            raise ValueError("the tokenizer files declare no eos_token (tokenizer_config.json)")
        self.eos_id = eos
        bos, pad = token_id("bos_token"), token_id("pad_token")
        self.bos_id = eos if bos is None else bos
        self.pad_id = eos if pad is None else pad

    @classmethod
    def load(cls, directory: str | Path) -> HFTokenizer:
        """Loads tokenizer.json, the special tokens and the chat template of a checkpoint."""
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: only fast (tokenizer.json) tokenizers are supported; convert "
                "a sentencepiece tokenizer.model with transformers' AutoTokenizer.save_pretrained"
            )
        config = _read_json(directory / "tokenizer_config.json")
        special_map = _read_json(directory / "special_tokens_map.json")
        special = {}
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            special[name] = _token_text(config.get(name, special_map.get(name)))
        return cls(
            tokenizers.Tokenizer.from_file(str(path)),
            special_tokens=special,
            chat_template=_chat_template(directory, config),
        )

    def save(self, directory: str | Path) -> Path:
        """Writes tokenizer.json and tokenizer_config.json (special tokens, chat template), the
        files `load` and transformers' AutoTokenizer read."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / "tokenizer.json"))
        config = {k: v for k, v in self.special_tokens.items() if v is not None}
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return directory

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text are recognised, none added."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(
            [int(i) for i in ids], skip_special_tokens=skip_special_tokens
        )

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, str]],
        *,
        add_generation_prompt: bool = True,
        **template_kwargs,
    ) -> str:
        """The chat as text, rendered by the checkpoint's template (ValueError if it has none)."""
        if self.chat_template is None:
            raise ValueError("this checkpoint has no chat template (tokenizer_config.json)")
        return _compile(self.chat_template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            **{k: v for k, v in self.special_tokens.items() if v is not None},
            **template_kwargs,
        )

    def encode_chat(
        self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of the rendered chat (what to feed the model before its reply)."""
        return self.encode(
            self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        )

    def chat_prompt(
        self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """The chat rendered up to the assistant's reply (with the generation prompt), without a
        leading BOS token: alignax's sequence layout writes BOS itself."""
        text = self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        bos = self.special_tokens.get("bos_token")
        return text[len(bos) :] if bos and text.startswith(bos) else text

    def chat_reply(self, messages: Sequence[dict[str, str]], reply: str) -> str:
        """The assistant's `reply` to `messages` as the template writes it after `chat_prompt`
        (with its end-of-turn marks), cut before the EOS token: the layout appends EOS."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=True)
        turn = {"role": "assistant", "content": reply}
        full = self.apply_chat_template([*messages, turn], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ValueError(
                "chat template: the chat with the reply does not begin with the chat rendered "
                "for generation; a template that rewrites earlier turns is not supported"
            )
        written = full[len(prompt) :]
        eos = self.special_tokens.get("eos_token")
        return written[: written.index(eos)] if eos and eos in written else written


_TEMPLATES: dict[str, Any] = {}


def _compile(source: str):
    if source not in _TEMPLATES:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ValueError(f"chat template: {message}")

        def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(
                value,
                ensure_ascii=ensure_ascii,
                indent=indent,
                separators=separators,
                sort_keys=sort_keys,
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
        _TEMPLATES[source] = env.from_string(source)
    return _TEMPLATES[source]


__all__ = ["HFTokenizer"]
