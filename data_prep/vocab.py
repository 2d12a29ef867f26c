"""vocab.json: token -> id, with the four special tokens first (a contract other tools read)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD_TOKEN, SOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<PAD>", "<SOS>", "<EOS>", "<UNK>"
SPECIAL_TOKENS = (PAD_TOKEN, SOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


class Vocab:
    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {tuple(tokens[:4])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not repeat tokens")
        self.id_to_token: list[str] = list(tokens)
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, formulas: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Tokens seen at least `min_count` times, most frequent first (ties by name, so it is stable)."""
        counts = Counter(tok for formula in formulas for tok in formula)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIAL_TOKENS, *(t for t in kept if t not in SPECIAL_TOKENS)])

    @classmethod
    def load(cls, path: Path) -> Vocab:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is this a prepared dataset folder (make data ...)?")
        mapping: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))
        tokens = [tok for tok, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
        if [mapping[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError(f"{path}: ids must be 0..{len(tokens) - 1} without gaps")
        return cls(tokens)

    def save(self, path: Path) -> None:
        text = json.dumps(self.token_to_id, ensure_ascii=False, indent=0) + "\n"
        Path(path).write_text(text, encoding="utf-8")

    def __len__(self) -> int:
        return len(self.id_to_token)

    def __contains__(self, token: str) -> bool:
        return token in self.token_to_id

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids without <SOS>/<EOS>; unknown tokens become <UNK>."""
        return [self.token_to_id.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first <EOS>, skipping <PAD> and <SOS>."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, SOS_ID):
                continue
            out.append(self.id_to_token[i] if 0 <= i < len(self.id_to_token) else UNK_TOKEN)
        return out
