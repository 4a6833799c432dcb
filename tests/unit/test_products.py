"""Named products in questions, and whether an article's headings are about them (services/drafter/products.py)."""

from __future__ import annotations

import pytest

from services.drafter.products import is_about, named_products


@pytest.mark.parametrize(
    "question, names",
    [
        ("What APY does the Bronze savings account pay?", ["Bronze"]),
        ("what cash back do I get with the Diamond Elite card", ["Diamond Elite"]),
        ("What does it cost to send a wire from my Lime Green business account?", ["Lime Green"]),
        ("What is the annual fee on the EcoCard?", ["EcoCard"]),
        ("I have a Gold Plus Saver account and a Navy Blue account.", ["Gold Plus Saver", "Navy Blue"]),
        ("You have a Silver Rewards Card with Rho-Bank.", ["Silver Rewards"]),
        ("**Goal:** move money out of the Light Blue Account", ["Light Blue"]),
        # Not products of the bank: networks, countries, acronyms, words that start a sentence.
        ("Is my Visa card accepted in the US?", []),
        ("My MasterCard was declined", []),
        ("Are US accounts supported?", []),
        ("Can I use an American Express card?", []),
        ("Unauthorised card use: someone used my debit card", []),
        ("- **Unauthorised** card use", []),
        ("Can I close my Rho-Bank account?", []),
        ("Why was my card declined?", []),
        ("How fast does the Gold Rewards concierge answer?", []),  # no account or card named
    ],
)
def test_named_products(question: str, names: list[str]) -> None:
    assert named_products(question) == names


def test_an_article_is_about_a_product_its_title_or_heading_names() -> None:
    assert is_about("Lime Green", "Why am I being charged a fee on my Lime Green Account?")
    assert is_about("Bronze", "Fees and rates", "Bronze Savings Account")
    assert is_about("EcoCard", "EcoCard: Apply for a Sustainable Rewards Credit Card")
    assert not is_about("Bronze", "Green Fee-Free Account features")
    assert not is_about("Gold Plus", "Gold Saver Account: Mobile banking")
    assert not is_about("Platinum Plus", "Linked Checking Account APY Boosts for Savings Accounts")
