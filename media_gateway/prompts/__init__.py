"""The prompt catalogue: what callers hear, by name and language, as 8 kHz int16 samples.

Every directory has the layout ``<lang>/<name>.wav`` (``en/welcome.wav``, ``zh/welcome.wav``).
Operator directories are searched first, in order, then the shipped :data:`DEFAULT_DIRECTORY`;
a prompt missing in the caller's language falls back to the catalogue's default language::

    catalogue = PromptCatalogue([Path("/etc/hotline/prompts")], default_language="en")
    catalogue.get("welcome", "zh")                      # int16, 8 kHz, read-only
    catalogue.sequence(["position_before", "silence:200", "beep"], "en")
    catalogue.say_number(105, "zh")                     # 一百零五

WAV files may be PCM 16-bit, 8-bit, A-law or μ-law, at any rate and channel count: they are
mixed down to mono and resampled to 8 kHz once, then cached (bounded, least recently used out,
reloaded when the file's modification time or size changes).

Generated audio is named by a spec string, accepted wherever a prompt name is: ``silence:<ms>``,
``tone:<hz>:<ms>``, ``beep`` (the voicemail tone) and ``moh`` (music on hold: a ``moh.wav`` from
the directories if there is one, else 30 s of :func:`media_gateway.audio.tones.music_on_hold`).

Numbers follow each language's rules (:func:`number_words`); docs/prompts.md has the details.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media_gateway.audio import tones
from media_gateway.audio.resample import resample
from media_gateway.audio.wav import read_wav

__all__ = [
    "DEFAULT_DIRECTORY",
    "RATE",
    "TEXTS_FILE",
    "PromptCatalogue",
    "PromptNotFound",
    "number_words",
]

RATE = 8000
"""The rate of everything the catalogue returns (G.711's)."""
DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "default"
"""The shipped prompts, ``default/<lang>/<name>.wav``, made by scripts/make-prompts."""
TEXTS_FILE = Path(__file__).resolve().parent / "texts.toml"
"""What every shipped prompt says, in each language."""
MOH_SECONDS = 30.0
"""Length of the generated music-on-hold loop."""
MAX_SPEC_MS = 600_000
"""Longest generated silence or tone (10 minutes): a typo in a flow must not eat the memory."""
NUMBER_LANGUAGES = ("en", "zh")
"""Languages :func:`number_words` has rules for."""

Samples = npt.NDArray[np.int16]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")
_SILENCE = re.compile(r"silence:(\d{1,7})")
_TONE = re.compile(r"tone:(\d{1,4}(?:\.\d+)?):(\d{1,7})")
_KEYS = {**{str(d): f"digit_{d}" for d in range(10)}, "*": "star", "#": "hash"}


class PromptNotFound(LookupError):
    """No file for a prompt name in the language asked, its fallback, or any directory."""

    def __init__(self, name: str, languages: Sequence[str], directories: Sequence[Path]) -> None:
        self.name = name
        """The prompt asked for."""
        self.languages = tuple(languages)
        """The languages tried, the caller's first, then the default language."""
        self.directories = tuple(directories)
        """The directories searched, in order."""
        langs = " or ".join(repr(lang) for lang in self.languages)
        dirs = ", ".join(str(d) for d in self.directories)
        super().__init__(f"no prompt {name!r} for language {langs} in {dirs}")


class PromptCatalogue:
    """Prompts by name and language from operator directories, then the shipped defaults.

    ``get`` returns read-only arrays shared with the cache (copy one before changing it);
    ``sequence``, ``say_digits`` and ``say_number`` return new arrays. One lock guards the cache,
    so a catalogue can be shared between threads.
    """

    def __init__(
        self,
        directories: Sequence[Path] = (),
        default_language: str = "en",
        *,
        cache_bytes: int = 64 * 2**20,
    ) -> None:
        dirs: list[Path] = []
        for d in [*(Path(d) for d in directories), DEFAULT_DIRECTORY]:
            if not d.is_dir():
                raise NotADirectoryError(f"prompt directory {str(d)!r} is not a directory")
            if d.resolve() not in (seen.resolve() for seen in dirs):
                dirs.append(d)
        self.directories: tuple[Path, ...] = tuple(dirs)
        """Searched in this order; the shipped default directory is last."""
        self.default_language = _check_language(default_language)
        """The language used when none is given, and the fallback for a missing prompt."""
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}")
        self.cache_bytes = cache_bytes
        """Upper bound on the samples held in the cache, in bytes."""
        self._cache: OrderedDict[str, tuple[tuple[int, int], Samples]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        """Bytes of samples the cache holds now (never more than :attr:`cache_bytes`)."""
        return self._cached_bytes

    # -- what is there ----------------------------------------------------------------------------

    def languages(self) -> list[str]:
        """Languages that have at least one prompt file in some directory, sorted."""
        found = {
            sub.name
            for d in self.directories
            for sub in d.iterdir()
            if sub.is_dir() and _LANG.fullmatch(sub.name) and any(sub.glob("*.wav"))
        }
        return sorted(found)

    def names(self, lang: str) -> list[str]:
        """Prompt names with a file in ``lang`` itself (not counting the fallback), sorted."""
        lang = _check_language(lang)
        return sorted({p.stem for d in self.directories for p in (d / lang).glob("*.wav")})

    # -- one prompt -------------------------------------------------------------------------------

    def get(self, name: str, lang: str | None = None) -> Samples:
        """The prompt ``name`` (or a spec such as ``silence:500``) in ``lang``, 8 kHz int16.

        Looks for ``<dir>/<lang>/<name>.wav`` in every directory, then the same in the default
        language; raises :class:`PromptNotFound` if none exists and ``ValueError`` for a malformed
        name, spec or language, or a file that is not a WAV file we can read.
        """
        lang = self._language(lang)
        generated = _generate(name)
        if generated is not None:
            return self._remember(f"spec:{name}", (0, 0), generated)
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a prompt name or spec: {name!r}")
        for path in self._candidates(name, lang):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            return self._load(path, (stat.st_mtime_ns, stat.st_size))
        if name == "moh":
            return self._remember("spec:moh", (0, 0), tones.music_on_hold(MOH_SECONDS))
        raise PromptNotFound(name, self._fallback_chain(lang), self.directories)

    def path(self, name: str, lang: str | None = None) -> Path:
        """The file :meth:`get` would play for ``name`` in ``lang``; raises :class:`PromptNotFound`."""
        lang = self._language(lang)
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a prompt name: {name!r}")
        for path in self._candidates(name, lang):
            if path.is_file():
                return path
        raise PromptNotFound(name, self._fallback_chain(lang), self.directories)

    # -- composed prompts -------------------------------------------------------------------------

    def sequence(self, items: Sequence[str], lang: str | None = None) -> Samples:
        """Names and specs played back to back, as one new array."""
        parts = [self.get(item, lang) for item in items]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def say_digits(self, digits: str, lang: str | None = None) -> Samples:
        """Read back keys: ``0``-``9`` as ``digit_0``..``digit_9``, ``*`` as star, ``#`` as hash."""
        bad = sorted({key for key in digits if key not in _KEYS})
        if bad:
            raise ValueError(f"say_digits: not keys 0-9, * or #: {''.join(bad)!r} in {digits!r}")
        return self.sequence([_KEYS[key] for key in digits], lang)

    def say_number(self, n: int, lang: str | None = None, *, measure: bool = False) -> Samples:
        """``n`` (0..9999) as words in ``lang``; see :func:`number_words` for ``measure``.

        A language without number rules speaks the number in the default language.
        """
        lang = self._language(lang)
        if _primary(lang) not in NUMBER_LANGUAGES:
            lang = self.default_language
        return self.sequence(number_words(n, lang, measure=measure), lang)

    # -- internals --------------------------------------------------------------------------------

    def _language(self, lang: str | None) -> str:
        return self.default_language if lang is None else _check_language(lang)

    def _fallback_chain(self, lang: str) -> list[str]:
        return [lang] if lang == self.default_language else [lang, self.default_language]

    def _candidates(self, name: str, lang: str) -> Iterator[Path]:
        """Files for ``name`` in search order: the language, (for moh) no language, the default."""
        chain = self._fallback_chain(lang)
        for d in self.directories:
            yield d / chain[0] / f"{name}.wav"
        if name == "moh":
            for d in self.directories:
                yield d / "moh.wav"
        for fallback in chain[1:]:
            for d in self.directories:
                yield d / fallback / f"{name}.wav"

    def _load(self, path: Path, stamp: tuple[int, int]) -> Samples:
        key = str(path)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                self._cache.move_to_end(key)
                return hit[1]
        try:
            audio = read_wav(path)
        except ValueError as exc:
            raise ValueError(f"prompt file {path}: {exc}") from exc
        samples = audio.samples if audio.rate == RATE else resample(audio.samples, audio.rate, RATE)
        return self._remember(key, stamp, samples)

    def _remember(self, key: str, stamp: tuple[int, int], samples: Samples) -> Samples:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                self._cache.move_to_end(key)
                return hit[1]
            samples = np.array(samples, dtype=np.int16)  # our own copy, then frozen
            samples.flags.writeable = False
            if hit is not None:
                del self._cache[key]
                self._cached_bytes -= hit[1].nbytes
            if samples.nbytes <= self.cache_bytes:
                self._cache[key] = (stamp, samples)
                self._cached_bytes += samples.nbytes
                while self._cached_bytes > self.cache_bytes:
                    _, (_, old) = self._cache.popitem(last=False)
                    self._cached_bytes -= old.nbytes
            return samples


def _check_language(lang: str) -> str:
    if not _LANG.fullmatch(lang):
        raise ValueError(f"not a language code: {lang!r} (expected e.g. 'en', 'zh', 'zh-CN')")
    return lang


def _primary(lang: str) -> str:
    """The primary subtag: ``zh`` for ``zh-CN``."""
    return re.split(r"[-_]", lang, maxsplit=1)[0].lower()


def _generate(spec: str) -> Samples | None:
    """Samples for a generated-audio spec, or None if ``spec`` is not one (``moh`` is not)."""
    if spec == "beep":
        return tones.beep()
    if spec.startswith("silence:"):
        m = _SILENCE.fullmatch(spec)
        if not m or int(m[1]) > MAX_SPEC_MS:
            raise ValueError(f"bad spec {spec!r}: expected silence:<ms>, 0..{MAX_SPEC_MS} ms")
        return tones.silence(int(m[1]) / 1000)
    if spec.startswith("tone:"):
        m = _TONE.fullmatch(spec)
        if not m or not 0 < float(m[1]) < RATE / 2 or int(m[2]) > MAX_SPEC_MS:
            raise ValueError(
                f"bad spec {spec!r}: expected tone:<hz>:<ms>, 0 < hz < {RATE // 2}, "
                f"0..{MAX_SPEC_MS} ms"
            )
        return tones.tone((float(m[1]),), int(m[2]) / 1000, dbfs=-12.0, ramp_ms=5.0)
    return None


# -- numbers ----------------------------------------------------------------------------------


def number_words(n: int, lang: str, *, measure: bool = False) -> list[str]:
    """The prompt names that say ``n`` (0..9999) in ``lang`` (``en``, ``zh``, or ``zh-CN`` ...).

    English (American, no "and"): ``105`` -> one hundred five, ``2024`` -> two thousand twenty
    four, from ``num_0``..``num_19``, the tens ``num_20``..``num_90``, ``num_hundred`` and
    ``num_thousand``.

    Chinese, from ``num_0``..``num_10``, ``num_hundred`` (百) and ``num_thousand`` (千): 十一 not
    一十一 for 10..19 at the start, but 一百一十 inside; one 零 for any run of inner zeros
    (105 = 一百零五, 1001 = 一千零一, 1010 = 一千零一十); trailing zeros are not spoken
    (2000 = 二千). With ``measure=True`` (the number counts something, 两分钟) a leading 2 before
    nothing, 百 or 千 is 两 (``num_2_measure``): 2 = 两, 200 = 两百, 2000 = 两千, while 20 stays
    二十 and 12 stays 十二. Without it the number reads as an ordinal or a plain number (第二位).
    English ignores ``measure``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 9999:
        raise ValueError(f"number_words: expected an integer 0..9999, got {n!r}")
    primary = _primary(lang)
    if primary == "en":
        return _english_words(n)
    if primary == "zh":
        return _chinese_words(n, measure=measure)
    raise ValueError(
        f"number_words: no number rules for language {lang!r}; known: {', '.join(NUMBER_LANGUAGES)}"
    )


def _english_words(n: int) -> list[str]:
    if n == 0:
        return ["num_0"]
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    if thousands:
        words += [f"num_{thousands}", "num_thousand"]
    hundreds, rest = divmod(rest, 100)
    if hundreds:
        words += [f"num_{hundreds}", "num_hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(f"num_{tens * 10}")
        if ones:
            words.append(f"num_{ones}")
    elif rest:
        words.append(f"num_{rest}")
    return words


_CHINESE_UNITS = ("num_thousand", "num_hundred", "num_10", None)


def _chinese_words(n: int, *, measure: bool) -> list[str]:
    if n == 0:
        return ["num_0"]
    digits = (n // 1000 % 10, n // 100 % 10, n // 10 % 10, n % 10)
    words: list[str] = []
    zero_pending = False
    for digit, unit in zip(digits, _CHINESE_UNITS, strict=True):
        if digit == 0:
            zero_pending = bool(words)  # one 零 for a run of inner zeros, none for trailing ones
            continue
        if zero_pending:
            words.append("num_0")
            zero_pending = False
        if unit == "num_10" and digit == 1 and not words:
            words.append("num_10")  # 十一, not 一十一
            continue
        leading_two = digit == 2 and not words and unit != "num_10"
        words.append("num_2_measure" if measure and leading_two else f"num_{digit}")
        if unit is not None:
            words.append(unit)
    return words
