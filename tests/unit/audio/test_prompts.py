"""The prompt catalogue: shipped prompts in en and zh, overrides, fallback, specs, numbers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media_gateway.audio import tones
from media_gateway.audio.wav import g711_wav_bytes, read_wav, wav_bytes, write_wav
from media_gateway.prompts import (
    DEFAULT_DIRECTORY,
    TEXTS_FILE,
    PromptCatalogue,
    PromptNotFound,
    number_words,
)
from media_gateway.rtp import g711

ROOT = Path(__file__).resolve().parents[3]
TEXTS = tomllib.loads(TEXTS_FILE.read_text(encoding="utf-8"))["prompts"]


@pytest.fixture(scope="module")
def shipped() -> PromptCatalogue:
    return PromptCatalogue()


def tone_1k(seconds: float, rate: int = 8000) -> npt.NDArray[np.int16]:
    return tones.tone((1000.0,), seconds, rate=rate, dbfs=-6.0)


def peak_hz(x: npt.NDArray[np.int16], rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


# -- the shipped prompts ------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_every_text_is_shipped_as_audible_8khz_audio(
    shipped: PromptCatalogue, name: str, lang: str
) -> None:
    path = shipped.path(name, lang)
    assert path == DEFAULT_DIRECTORY / lang / f"{name}.wav"  # its own file, not the fallback
    data = path.read_bytes()
    assert int.from_bytes(data[20:22], "little") == 7  # stored as G.711 μ-law
    assert read_wav(data).rate == 8000
    x = shipped.get(name, lang)
    assert x.dtype == np.int16
    assert 0.2 <= x.size / 8000 <= 15.0
    assert np.max(np.abs(x.astype(np.int32))) > 8000  # speech at a proper level, not silence


def test_catalogue_lists_languages_and_names(shipped: PromptCatalogue) -> None:
    assert {"en", "zh"} <= set(shipped.languages())
    assert shipped.names("en") == shipped.names("zh") == sorted(TEXTS)


def test_language_menu_is_the_same_bilingual_recording_in_both_languages(
    shipped: PromptCatalogue,
) -> None:
    en, zh = shipped.get("language_menu", "en"), shipped.get("language_menu", "zh")
    assert np.array_equal(en, zh)
    assert en.size > shipped.get("welcome", "en").size  # two sentences


def test_default_language_is_used_when_none_is_given(shipped: PromptCatalogue) -> None:
    assert np.array_equal(shipped.get("welcome"), shipped.get("welcome", "en"))
    zh_first = PromptCatalogue(default_language="zh")
    assert np.array_equal(zh_first.get("welcome"), shipped.get("welcome", "zh"))


def test_prompts_are_read_only(shipped: PromptCatalogue) -> None:
    x = shipped.get("goodbye", "en")
    with pytest.raises(ValueError, match="read-only"):
        x[0] = 1


# -- overrides and fallback ---------------------------------------------------------------------


def test_operator_override_replaces_one_prompt_and_leaves_the_others(
    tmp_path: Path, shipped: PromptCatalogue
) -> None:
    (tmp_path / "en").mkdir()
    write_wav(tmp_path / "en" / "welcome.wav", tone_1k(0.5))
    catalogue = PromptCatalogue([tmp_path])
    assert np.array_equal(catalogue.get("welcome", "en"), tone_1k(0.5))
    assert np.array_equal(catalogue.get("goodbye", "en"), shipped.get("goodbye", "en"))
    # an English override does not replace the shipped Chinese recording for Chinese callers
    assert np.array_equal(catalogue.get("welcome", "zh"), shipped.get("welcome", "zh"))


def test_earlier_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for d, seconds in ((first, 0.25), (second, 0.5)):
        (d / "en").mkdir(parents=True)
        write_wav(d / "en" / "welcome.wav", tone_1k(seconds))
    assert PromptCatalogue([first, second]).get("welcome", "en").size == 2000
    assert PromptCatalogue([second, first]).get("welcome", "en").size == 4000


def test_missing_chinese_prompt_falls_back_to_english(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    write_wav(tmp_path / "en" / "holiday.wav", tone_1k(0.3))
    catalogue = PromptCatalogue([tmp_path])
    assert "holiday" not in catalogue.names("zh")
    assert np.array_equal(catalogue.get("holiday", "zh"), tone_1k(0.3))
    assert catalogue.path("holiday", "zh") == tmp_path / "en" / "holiday.wav"


def test_unknown_prompt_raises_naming_the_prompt_and_language(shipped: PromptCatalogue) -> None:
    with pytest.raises(PromptNotFound) as caught:
        shipped.get("no_such_prompt", "zh")
    message = str(caught.value)
    assert "'no_such_prompt'" in message and "'zh'" in message and "'en'" in message
    assert str(DEFAULT_DIRECTORY) in message
    assert isinstance(caught.value, LookupError)
    assert caught.value.name == "no_such_prompt" and caught.value.languages == ("zh", "en")


@pytest.mark.parametrize("bad", ["../en/welcome", "en/welcome", "", "welcome.wav/.."])
def test_names_cannot_reach_outside_the_directories(shipped: PromptCatalogue, bad: str) -> None:
    with pytest.raises(ValueError, match="not a prompt name"):
        shipped.get(bad, "en")


def test_bad_language_and_missing_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a language code"):
        PromptCatalogue().get("welcome", "../en")
    with pytest.raises(NotADirectoryError, match="nowhere"):
        PromptCatalogue([tmp_path / "nowhere"])


# -- file formats -------------------------------------------------------------------------------


def test_16khz_pcm_override_is_resampled_to_8khz(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    write_wav(tmp_path / "en" / "welcome.wav", tone_1k(1.0, rate=16000), rate=16000)
    x = PromptCatalogue([tmp_path]).get("welcome", "en")
    assert x.size == 8000  # 16,000 samples at 16 kHz -> 8,000 at 8 kHz
    assert peak_hz(x) == pytest.approx(1000, abs=2)


def test_alaw_and_stereo_files_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    x = tone_1k(0.4)
    alaw = g711.alaw_encode(x).tobytes()
    (tmp_path / "en" / "alaw.wav").write_bytes(g711_wav_bytes(alaw, alaw=True))
    stereo = np.stack([x, x], axis=1).reshape(-1)
    data = bytearray(wav_bytes(stereo))  # a mono header: patch to 2 channels at 8 kHz
    data[22:24] = (2).to_bytes(2, "little")
    data[28:32] = (32000).to_bytes(4, "little")
    data[32:34] = (4).to_bytes(2, "little")
    (tmp_path / "en" / "stereo.wav").write_bytes(bytes(data))
    catalogue = PromptCatalogue([tmp_path])
    assert np.array_equal(catalogue.get("alaw", "en"), g711.alaw_decode(alaw))
    assert np.array_equal(catalogue.get("stereo", "en"), x)


def test_a_replaced_file_is_reloaded(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    path = tmp_path / "en" / "welcome.wav"
    write_wav(path, tone_1k(0.25))
    catalogue = PromptCatalogue([tmp_path])
    assert catalogue.get("welcome", "en").size == 2000
    write_wav(path, tone_1k(0.5))
    assert catalogue.get("welcome", "en").size == 4000


def test_cache_stays_within_its_bound(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    for i in range(10):
        write_wav(tmp_path / "en" / f"p{i}.wav", tone_1k(0.5))  # 8,000 bytes of samples each
    catalogue = PromptCatalogue([tmp_path], cache_bytes=20_000)
    for _ in range(2):
        for i in range(10):
            assert catalogue.get(f"p{i}", "en").size == 4000
            assert catalogue.cached_bytes <= 20_000


def test_a_file_that_is_not_wav_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match=r"broken\.wav.*not a RIFF/WAVE"):
        PromptCatalogue([tmp_path]).get("broken", "en")


# -- generated audio ----------------------------------------------------------------------------


def test_silence_spec_is_zeros(shipped: PromptCatalogue) -> None:
    x = shipped.get("silence:500")
    assert x.size == 4000 and not x.any()


def test_tone_spec_has_its_energy_at_the_frequency(shipped: PromptCatalogue) -> None:
    x = shipped.get("tone:1000:200", "zh")
    assert x.size == 1600
    assert peak_hz(x) == pytest.approx(1000, abs=10)
    assert np.max(np.abs(x.astype(np.int32))) > 5000


def test_beep_and_music_on_hold(shipped: PromptCatalogue) -> None:
    assert np.array_equal(shipped.get("beep"), tones.beep())
    moh = shipped.get("moh", "zh")
    assert moh.size == 30 * 8000 and np.any(moh)


def test_music_on_hold_file_overrides_the_generated_loop(tmp_path: Path) -> None:
    write_wav(tmp_path / "moh.wav", tone_1k(2.0))  # any language
    (tmp_path / "zh").mkdir()
    write_wav(tmp_path / "zh" / "moh.wav", tone_1k(1.0))  # Chinese callers only
    catalogue = PromptCatalogue([tmp_path])
    assert catalogue.get("moh", "zh").size == 8000
    assert catalogue.get("moh", "en").size == 16000


@pytest.mark.parametrize("bad", ["silence:", "silence:-5", "silence:9999999", "tone:5000:100"])
def test_malformed_specs_are_refused(shipped: PromptCatalogue, bad: str) -> None:
    with pytest.raises(ValueError, match="bad spec"):
        shipped.get(bad)


def test_sequence_concatenates_names_and_specs(shipped: PromptCatalogue) -> None:
    items = ["wait_before", "silence:250", "beep", "wait_after"]
    x = shipped.sequence(items, "zh")
    assert np.array_equal(x, np.concatenate([shipped.get(i, "zh") for i in items]))
    assert shipped.sequence([], "en").size == 0


# -- digits and numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_say_digits_is_the_digit_prompts_back_to_back(shipped: PromptCatalogue, lang: str) -> None:
    parts = ["digit_4", "digit_0", "star", "digit_9", "hash"]
    expected = sum(shipped.get(p, lang).size for p in parts)
    assert shipped.say_digits("40*9#", lang).size == expected
    with pytest.raises(ValueError, match="'A'"):
        shipped.say_digits("12A", lang)


@pytest.mark.parametrize(("n", "lang"), [(2024, "en"), (105, "zh"), (7, "en"), (1010, "zh")])
def test_say_number_is_its_words_back_to_back(shipped: PromptCatalogue, n: int, lang: str) -> None:
    words = number_words(n, lang)
    x = shipped.say_number(n, lang)
    assert x.size == sum(shipped.get(w, lang).size for w in words)
    assert np.array_equal(x, shipped.sequence(words, lang))


def test_say_number_in_a_language_without_rules_uses_the_default(tmp_path: Path) -> None:
    (tmp_path / "fr").mkdir()
    write_wav(tmp_path / "fr" / "welcome.wav", tone_1k(0.3))
    catalogue = PromptCatalogue([tmp_path])
    assert np.array_equal(catalogue.say_number(42, "fr"), catalogue.say_number(42, "en"))


EN = {
    0: "0",
    7: "7",
    13: "13",
    20: "20",
    42: "40 2",
    100: "1 hundred",
    105: "1 hundred 5",
    999: "9 hundred 90 9",
    1000: "1 thousand",
    2024: "2 thousand 20 4",
}
ZH = {
    0: "零",
    10: "十",
    11: "十一",
    20: "二十",
    105: "一百零五",
    110: "一百一十",
    1001: "一千零一",
    1010: "一千零一十",
    2000: "二千",
    2024: "二千零二十四",
    9999: "九千九百九十九",
}
_ZH_WORD = {
    "零": "num_0",
    "一": "num_1",
    "二": "num_2",
    "三": "num_3",
    "四": "num_4",
    "五": "num_5",
    "六": "num_6",
    "七": "num_7",
    "八": "num_8",
    "九": "num_9",
    "十": "num_10",
    "两": "num_2_measure",
    "百": "num_hundred",
    "千": "num_thousand",
}


@pytest.mark.parametrize(("n", "said"), EN.items())
def test_english_number_words(n: int, said: str) -> None:
    assert number_words(n, "en") == [f"num_{w}" for w in said.split()]


@pytest.mark.parametrize(("n", "said"), ZH.items())
def test_chinese_number_words(n: int, said: str) -> None:
    assert number_words(n, "zh") == [_ZH_WORD[c] for c in said]
    assert number_words(n, "zh-CN") == number_words(n, "zh")


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (2, "两"),
        (12, "十二"),
        (20, "二十"),
        (22, "二十二"),
        (200, "两百"),
        (2222, "两千二百二十二"),
        (102, "一百零二"),
    ],
)
def test_chinese_counts_use_liang_for_a_leading_two(n: int, said: str) -> None:
    assert number_words(n, "zh", measure=True) == [_ZH_WORD[c] for c in said]


@pytest.mark.parametrize("n", [-1, 10000, True, 2.0])
def test_number_words_refuses_numbers_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.9999"):
        number_words(n, "en")


def test_number_words_refuses_languages_without_rules() -> None:
    with pytest.raises(ValueError, match="no number rules for language 'fr'"):
        number_words(5, "fr")


# -- the generator script -----------------------------------------------------------------------


def make_prompts(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make-prompts"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_prompts_check_passes_on_the_shipped_files() -> None:
    result = make_prompts("--check")
    assert result.returncode == 0, result.stderr
    assert f"{len(TEXTS)} prompts in en, zh: ok" in result.stdout


def test_make_prompts_check_names_a_missing_file(tmp_path: Path) -> None:
    copy = tmp_path / "prompts"
    shutil.copytree(DEFAULT_DIRECTORY, copy)
    (copy / "zh" / "goodbye.wav").unlink()
    write_wav(copy / "en" / "stray.wav", tone_1k(0.5))
    result = make_prompts("--check", "--dir", copy)
    assert result.returncode == 1
    assert "zh/goodbye.wav: missing" in result.stderr
    assert "en/stray.wav: not in texts.toml" in result.stderr
