import pytest

from korag.errors import ConfigError, ModelError
from korag.text.korean import BigramStemTokenizer, strip_suffix
from korag.text.tokenize import Tokenizer, available_tokenizers, make_tokenizer

TEXT = "대한민국의 수도는 Seoul이다."


def test_registry_and_config_round_trip():
    assert {"bigram", "bigram-stem", "hf", "kiwi", "mecab", "ngram", "whitespace"} <= set(available_tokenizers())
    for spec in ["bigram", "bigram-stem", "whitespace", "kiwi", "mecab", "ngram:3"]:
        tok = make_tokenizer(spec)
        assert isinstance(tok, Tokenizer)
        rebuilt = make_tokenizer(tok.config())
        assert rebuilt == tok
        assert rebuilt.tokenize(TEXT) == tok.tokenize(TEXT)
        assert tok.tokenize_batch([TEXT, "둘째"]) == [tok.tokenize(TEXT), tok.tokenize("둘째")]


def test_tokenizer_outputs():
    assert make_tokenizer("whitespace").tokenize(TEXT) == ["대한민국의", "수도는", "seoul이다."]
    assert make_tokenizer("whitespace", lowercase=False).tokenize("A b") == ["A", "b"]
    assert make_tokenizer("bigram").tokenize("한국 어") == ["한국", "국어"]
    assert make_tokenizer("bigram").tokenize("가") == ["가"]
    assert make_tokenizer("ngram:3").tokenize("가나다라") == ["가나다", "나다라"]
    assert make_tokenizer("kiwi").tokenize(TEXT)[:4] == ["대한민국", "의", "수도", "는"]
    assert make_tokenizer("mecab").tokenize(TEXT)[:4] == ["대한민국", "의", "수도", "는"]


def test_pos_filters():
    kiwi = make_tokenizer({"name": "kiwi", "include_pos": ["NN", "SL"]})
    assert kiwi.tokenize(TEXT) == ["대한민국", "수도", "seoul"]
    mecab = make_tokenizer("mecab", exclude_pos=["J", "E", "S", "V"])
    assert mecab.tokenize("철수가 학교에 갔다.") == ["철수", "학교"]


def test_bigram_stem_adds_particle_stripped_words():
    tok = BigramStemTokenizer()
    assert tok.tokenize("서울에서 Python을") == [
        "서울",
        "울에",
        "에서",
        "서p",
        "py",
        "yt",
        "th",
        "ho",
        "on",
        "n을",
        "서울",
        "python",
    ]
    assert BigramStemTokenizer(bigrams=False).tokenize("학생들에게 책을 주었다") == ["학생", "책", "주었다"]
    assert strip_suffix("대한민국의") == "대한민국"
    assert strip_suffix("이") == "이"  # never strips a word to nothing
    assert strip_suffix("도서관에서는") == "도서관"
    with pytest.raises(ValueError):
        BigramStemTokenizer(stems=False, bigrams=False)


def test_hf_tokenizer_from_local_directory(tmp_path):
    from tokenizers import Tokenizer as HFTok
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTok(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["대한민국의 수도는 서울이다", "서울은 큰 도시이다"] * 20,
        trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]"]),
    )
    (tmp_path / "model").mkdir()
    tok.save(str(tmp_path / "model" / "tokenizer.json"))
    hf = make_tokenizer(f"hf:{tmp_path / 'model'}")
    pieces = hf.tokenize("서울은 도시이다")
    assert "".join(p.removeprefix("##") for p in pieces) == "서울은도시이다"
    assert "[CLS]" not in pieces
    assert make_tokenizer(hf.config()).tokenize("서울") == hf.tokenize("서울")


def test_bad_tokenizer_specs():
    with pytest.raises(ConfigError, match="unknown tokenizer 'nope'"):
        make_tokenizer("nope")
    with pytest.raises(ConfigError, match="expected ngram:<n>"):
        make_tokenizer("ngram:x")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        make_tokenizer({"name": "bigram-stem", "colour": 1})
    with pytest.raises(ModelError, match="no such tokenizer file or directory"):
        make_tokenizer("hf:/definitely/not/here")
