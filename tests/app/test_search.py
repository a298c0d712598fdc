"""Search: the query language, ranking, snippets, CJK/substrings, and that no input breaks it."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import create_item
from taskplaner.config import Settings
from taskplaner.search import Query, Term, highlight_snippet, parse, word_match
from taskplaner.services import open_services


def search(client, app, q, **params):
    res = client.get(app.url("/api/v1/search"), params={"q": q, **params})
    assert res.status_code == 200, res.text
    return res.json()


def titles(client, app, q):
    return [i["title"] for i in search(client, app, q)["items"]]


@pytest.fixture
def corpus(app, client):
    create_item(client, app, title="Garden plan", body="plant tomatoes and basil in spring", tags=["home"])
    create_item(
        client, app, title="Quarterly report", body="the garden budget is in the sheet", tags=["work"]
    )
    create_item(
        client, app, type="task", title="Buy basil seeds", body="at the market", tags=["home", "shopping"]
    )
    create_item(client, app, title="Café notes", body="crème brûlée recipe <script>x</script>")
    create_item(client, app, title="東京旅行", body="浅草寺と東京タワーを見に行く")


def test_all_words_must_match_and_title_outranks_body(app, client, corpus):
    assert titles(client, app, "garden") == ["Garden plan", "Quarterly report"]
    assert titles(client, app, "garden budget") == ["Quarterly report"]


def test_phrase_prefix_exclude_and_or(app, client, corpus):
    assert titles(client, app, '"basil in spring"') == ["Garden plan"]
    assert titles(client, app, '"spring basil"') == []
    assert set(titles(client, app, "tomat*")) == {"Garden plan"}
    assert titles(client, app, "basil -seeds") == ["Garden plan"]
    assert set(titles(client, app, "report OR market")) == {"Quarterly report", "Buy basil seeds"}


def test_filters(app, client, corpus):
    assert titles(client, app, "basil type:task") == ["Buy basil seeds"]
    assert titles(client, app, "basil status:open") == ["Buy basil seeds"]
    assert set(titles(client, app, "tag:home")) == {"Garden plan", "Buy basil seeds"}
    assert titles(client, app, "tag:home -tag:shopping") == ["Garden plan"]
    assert titles(client, app, "type:nonsense") == []


def test_diacritics_are_ignored(app, client, corpus):
    assert titles(client, app, "creme brulee") == ["Café notes"]
    assert titles(client, app, "cafe") == ["Café notes"]


def test_snippet_marks_matches_and_escapes_html(app, client, corpus):
    hit = search(client, app, "recipe")["items"][0]
    assert "<mark>recipe</mark>" in hit["snippet"]
    assert "&lt;script&gt;" in hit["snippet"] and "<script>" not in hit["snippet"]


def test_cjk_text_and_substrings_are_findable(app, client, corpus):
    result = search(client, app, "東京タワー")
    assert [i["title"] for i in result["items"]] == ["東京旅行"] and result["mode"] == "substring"
    assert "<mark>東京タワー</mark>" in result["items"][0]["snippet"]
    assert titles(client, app, "浅草") == ["東京旅行"]  # 2 characters: LIKE fallback
    assert titles(client, app, "arterl") == ["Quarterly report"]  # inside a word


def test_excluding_a_cjk_word_works_beside_latin_words(app, client, corpus):
    create_item(client, app, title="oat porridge", body="oat 検索 note")
    create_item(client, app, title="oat bars", body="plain")
    assert set(titles(client, app, "oat")) == {"oat bars", "oat porridge"}
    assert titles(client, app, "oat -検索") == ["oat bars"]
    assert titles(client, app, "oat -検") == ["oat bars"]  # one character: a scan


def test_decomposed_and_half_width_queries_find_composed_text(app, client, corpus):
    create_item(client, app, title="カタカナ メモ", body="plain")
    decomposed = "cafe\u0301"  # e + combining acute, as macOS file names are
    assert titles(client, app, decomposed) == ["Café notes"]
    assert titles(client, app, "ｶﾀｶﾅ") == ["カタカナ メモ"]  # half-width katakana
    assert titles(client, app, "ＭＥＭＯ") == [] and titles(client, app, "ｍｅｍｏ") == []
    create_item(client, app, title="memo pad", body="x")
    assert titles(client, app, "ｍｅｍｏ") == ["memo pad"]  # full-width Latin query
    # and text stored decomposed is found by a composed query
    create_item(client, app, title="Jose\u0301 notes", body="x")
    assert titles(client, app, "José") == ["José notes"]


def test_a_query_costs_a_bounded_number_of_prefix_merges_and_scans():
    """Prefixes of one letter match nearly everything, and each prefix or short substring
    term is a merge or a scan; beyond the bounds the query stays valid and cheap."""
    query = parse(" OR ".join(f"{c}*" for c in "abcdefghijklmnopqrstuvwxyz"))
    assert not any(t.prefix for t in query.terms)  # one letter: searched as a word
    query = parse(" ".join(f"{c}{c}*" for c in "abcdefghijkl"))
    assert [t.prefix for t in query.terms] == [True] * 8 + [False] * 4


def test_pagination_over_search_results(app, client):
    for i in range(5):
        create_item(client, app, title=f"match {i}")
    first = search(client, app, "match", limit=2)
    second = search(client, app, "match", limit=2, cursor=first["next_cursor"])
    third = search(client, app, "match", limit=2, cursor=second["next_cursor"])
    ids = [i["id"] for page in (first, second, third) for i in page["items"]]
    assert len(ids) == 5 == len(set(ids)) and third["next_cursor"] is None


def test_search_follows_edits_and_deletes(app, client):
    item = create_item(client, app, title="alpha")
    client.patch(app.url(f"/api/v1/items/{item['id']}"), json={"title": "omega"})
    assert titles(client, app, "alpha") == []
    assert titles(client, app, "omega") == ["omega"]
    client.delete(app.url(f"/api/v1/items/{item['id']}"))
    assert titles(client, app, "omega") == []


NASTY = [
    '"',
    '""',
    '"unterminated',
    "*",
    "-",
    "--",
    "-*",
    "NEAR",
    "NEAR(a b)",
    "AND",
    "OR",
    "NOT",
    "a AND",
    "OR b",
    "(",
    ")",
    "a:b",
    "title:x",
    "^x",
    "'",
    "\\",
    "%",
    "_",
    "🎉",
    "🎉🎉🎉",
    "x" * 10_000,
    "\x00",
    "tag:",
    "-tag:",
    'tag:"x"',
    "a OR OR b",
    "\u0301",
    "é*",
    "*a",
    '-""',
    "{a b}",
    "a + b",
    "col:",
    "rank:1",
]


@pytest.mark.parametrize("q", NASTY)
def test_hostile_queries_return_a_list(app, client, corpus, q):
    result = search(client, app, q)
    assert isinstance(result["items"], list)


def test_empty_query_runs_no_fts(app, client, corpus):
    assert search(client, app, "")["mode"] == "filter"
    assert len(search(client, app, "")["items"]) == 5


@pytest.fixture(scope="module")
def raw_db(tmp_path_factory):
    services = open_services(Settings(data_dir=tmp_path_factory.mktemp("fts")))
    services.items.create({"title": "hello world", "body": "some text", "tags": ["x"]})
    yield services
    services.close()


FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@settings(max_examples=400, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.text(max_size=200))
def test_parser_never_raises_and_fts_accepts_every_expression(raw_db, text):
    query = parse(text)
    expr = word_match(query)
    if expr is not None:
        try:
            raw_db.db.conn.execute(
                "SELECT count(*) FROM items_fts WHERE items_fts MATCH ?", (expr,)
            ).fetchone()
        except sqlite3.OperationalError as exc:  # pragma: no cover - the property under test
            pytest.fail(f"FTS5 rejected {expr!r} from {text!r}: {exc}")
    result = raw_db.search.search(text)
    assert isinstance(result["items"], list)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.text(alphabet=st.sampled_from('ab "*-():^OR NEAR'), max_size=40))
def test_operator_soup_never_errors(raw_db, text):
    raw_db.search.search(text)


def test_highlight_escapes_before_marking():
    assert highlight_snippet("<b>\x02x\x03</b>") == "&lt;b&gt;<mark>x</mark>&lt;/b&gt;"


def test_very_common_words_rank_within_the_newest_matches(tmp_path):
    services = open_services(Settings(data_dir=tmp_path / "d", max_ranked_matches=100))
    try:
        # an old note that would win on relevance, then 150 newer weaker matches
        services.items.create({"title": "apple apple apple", "body": "apple"})
        for i in range(150):
            services.items.create({"title": f"note {i}", "body": "apple pie and more words"})
        ranked = services.search.search("apple", limit=5)["items"]
        assert "apple apple apple" not in [r["title"] for r in ranked]
        filtered = services.search.search("apple type:note", limit=5)["items"]  # filters: all
        assert filtered[0]["title"] == "apple apple apple"
        assert services.search.search("apple", limit=200)["next_cursor"] is None
    finally:
        services.close()


# Letters whose case differs in several scripts, CJK, spaces and the characters that mean
# something to LIKE or FTS5.
SUBSTRING_ALPHABET = "aAbBäÄßпПрР東京 -\"%_*'"


@st.composite
def notes_and_needle(draw):
    """Notes made of the needle in other cases, its trigrams in any order and other text:
    the cases where trigrams alone would give the wrong answer."""
    needle = draw(st.text(SUBSTRING_ALPHABET, min_size=3, max_size=12))
    trigrams = [needle[i : i + 3] for i in range(len(needle) - 2)]
    piece = st.one_of(
        st.sampled_from([needle, needle.upper(), needle.lower(), needle.swapcase()]),
        st.sampled_from(trigrams),
        st.text(SUBSTRING_ALPHABET, max_size=3),
    )
    notes = draw(st.lists(st.lists(piece, max_size=5).map("".join), min_size=1, max_size=6))
    return notes, needle


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(notes_and_needle())
def test_substring_search_finds_exactly_the_notes_holding_the_text(raw_db, case):
    """The trigram index only narrows the candidates (it keeps no positions); whatever it
    yields, the result is exactly the notes that hold the needle, ignoring case."""
    notes, needle = case
    with raw_db.db.write() as conn:
        conn.execute("DELETE FROM items")
        for text in notes:
            conn.execute(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', '', ?, '', '', '')",
                (text,),
            )
    with raw_db.db.snapshot() as conn:
        found = raw_db.search._substring(conn, Query(groups=[[Term(needle)]]), 100, 0)
    expected = [text for text in notes if needle.lower() in text.lower()]
    assert sorted(r["body"] for r in found) == sorted(expected)
