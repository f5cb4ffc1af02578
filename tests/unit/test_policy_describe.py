"""A policy in plain language: the sentences a retailer's staff read on the desk."""

from __future__ import annotations

import pytest

from refunddesk.policy import default_policy, example_policy, parse_policy
from refunddesk.policy.describe import describe


def says(yaml: str) -> list[str]:
    return describe(parse_policy(yaml))


def test_the_window_names_its_length_and_the_categories_that_differ() -> None:
    sentences = says("window: {days: 30, categories: {electronics: {days: 14}}}\ncurrency: EUR\n")
    assert (
        sentences[0]
        == "Returns are accepted within 30 calendar days of delivery; electronics within 14."
    )


def test_business_day_windows_say_what_is_skipped() -> None:
    sentences = says(
        "window:\n  days: 10\n  counting: business\n  holidays: [2026-12-25, 2026-12-26]\n"
    )
    assert "Returns are accepted within 10 business days of delivery." in sentences
    assert "Business days leave out Saturday and Sunday and 2 public holidays." in sentences


def test_a_hard_window_refuses_and_a_soft_one_sends_to_review() -> None:
    assert "Requests after the window are refused." in says("window: {outside: hard}")
    assert "Requests after the window go to a person for review." in says("window: {}")


def test_a_required_condition_is_said_per_reason() -> None:
    sentences = says("requirements: {reasons: {changed_mind: {condition: unopened}}}")
    assert "Changed-mind returns must be unopened." in sentences
    assert "Items in a worse condition than required are not refunded." in sentences


def test_required_evidence_is_said_with_articles() -> None:
    sentences = says("requirements: {reasons: {damaged: {evidence: [photo, receipt]}}}")
    assert "Damaged-item returns need a photo and a receipt." in sentences


def test_an_amount_rule_says_what_is_paid_at_once_and_what_comes_back_first() -> None:
    sentences = says(
        "currency: EUR\nreturns:\n  default: return\n"
        "  rules:\n    - {then: instant, amount_below: 20}\n"
    )
    assert (
        "Refunds under 20.00 EUR are paid at once; above that, the goods come back first."
        in sentences
    )
    assert "Customers have 30 days to send the goods back." in sentences


def test_a_percent_restocking_fee_names_category_and_reason() -> None:
    sentences = says(
        "fees:\n  restocking:\n"
        "    - {percent: 15, categories: [electronics], reasons: [changed_mind]}\n"
    )
    assert "A 15% restocking fee applies to electronics returned for a change of mind." in sentences


def test_a_fixed_fee_and_label_deduction_are_in_the_policy_currency() -> None:
    sentences = says(
        "currency: USD\nfees:\n"
        "  restocking: [{per_unit: 25, categories: [furniture]}]\n"
        "  return_shipping: [{amount: 7.95, reasons: [changed_mind]}]\n"
    )
    assert "A restocking fee of 25.00 USD per unit applies to furniture." in sentences
    assert (
        "When goods come back for a change of mind, 7.95 USD is deducted for the return label."
        in sentences
    )


def test_four_eyes_amounts_use_thousands_separators_and_no_decimals_for_yen() -> None:
    sentences = says(
        "currency: JPY\nauthorization: {auto_approve_below: 5000, four_eyes_above: 100000}\n"
    )
    assert "Refunds above 100,000 JPY need two different approvers." in sentences
    assert (
        "Refunds under 5,000 JPY are approved automatically; larger ones need an approver."
        in sentences
    )


def test_role_limits_list_every_role_and_refuse_the_rest() -> None:
    sentences = says("currency: EUR\nauthorization:\n  role_limits: {agent: 300, finance: null}\n")
    assert (
        "Who may approve: an agent up to 300.00 EUR and finance without limit; "
        "other roles may not approve." in sentences
    )


def test_refund_method_and_store_credit_bonus_are_said() -> None:
    sentences = says("refund: {method: customer_choice, store_credit_bonus_percent: 10}")
    assert "The customer chooses the original payment method or store credit." in sentences
    assert "Store credit comes with a 10% bonus." in sentences


def test_the_default_policy_reads_as_generous() -> None:
    sentences = describe(default_policy())
    assert "Refunds are paid at once; the goods do not have to come back." in sentences
    assert "Returns are free: no restocking fee and no deduction for the label." in sentences
    assert "Refunds that meet the policy are approved automatically, at any amount." in sentences


@pytest.mark.parametrize("name", ["northwind", "sakura", "maple"])
def test_every_example_reads_as_whole_sentences(name: str) -> None:
    sentences = describe(example_policy(name))
    assert len(sentences) >= 10
    for sentence in sentences:
        assert sentence[0].isupper(), sentence
        assert sentence.endswith("."), sentence
        assert "_" not in sentence.replace("NW-SCK-3P", "").replace("MH-RUG-M", ""), sentence


def test_two_examples_read_differently() -> None:
    assert set(describe(example_policy("sakura"))) != set(describe(example_policy("northwind")))
