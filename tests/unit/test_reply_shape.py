"""benchmarks/reply_shape.py: the counts it prints come from what a draft quotes and states."""

from __future__ import annotations

from benchmarks.reply_shape import numbered_lists, shape

ARTICLE = "Intro.\n\n1. Open the app and tap Add money.\n2. Tap Auto top-up.\n3. Select the card and tap Save.\n"


def test_a_list_quoted_whole_in_part_or_with_a_gap_and_a_record_told_twice():
    lists = {"a1": numbered_lists(ARTICLE)}
    assert lists["a1"] == [["Open the app and tap Add money.", "Tap Auto top-up.", "Select the card and tap Save."]]
    cited = [{"article_id": "a1"}]
    records = [
        {"draft": "- Open the app and tap Add money [1].\n- Tap Auto top-up [1].\n- Select the card and tap Save [1].",
         "citations": cited},
        {"draft": "- Open the app and tap Add money [1].\n- Tap Auto top-up [1].", "citations": cited},
        {"draft": "- Open the app and tap Add money [1].\n- Select the card and tap Save [1].", "citations": cited},
        {"draft": "Here is what I can see on your account:\n- The charge of 47.82 GBP is yours.\n"
                  "- A charge of 47.82 GBP, completed.\n\nThe rest.", "citations": []},
        {"draft": "Here is what I can see on your account:\n- The charge of 47.82 GBP is yours.\n\nThe rest.",
         "citations": []},
    ]
    assert shape(records, lists) == {"quoting_a_list": 3, "partial": 2, "partial_not_first_steps": 1,
                                     "stating_findings": 2, "same_amount_twice": 1}
