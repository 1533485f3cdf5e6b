"""The CLI's result table lines up with Japanese and Chinese titles: they take two terminal columns per character,
and padding by characters shifted the category, score and sources columns of their rows."""

from __future__ import annotations

from recsys.cli.columns import columns, cut, pad


def test_wide_characters_take_two_columns_and_marks_none() -> None:
    assert columns("abc") == 3 and columns("東京タワー") == 10 and columns("Cafe\u0301") == 4


def test_padded_cells_end_at_the_same_column_whatever_the_script() -> None:
    cells = [pad(cut(t, 12), 12) for t in ("T-shirt", "東京タワーのお土産キーホルダー", "Größe XL", "红色连衣裙")]
    assert {columns(c) for c in cells} == {12}
    assert cut("東京タワーのお土産キーホルダー", 12) == "東京タワー…" and cut("short", 12) == "short"
    assert cut("a long title with words", 12) == "a long…"
