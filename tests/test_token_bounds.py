"""The one home of the hosted token bounds: what a request may offer, and what it is served."""
from wlm import hosting


def test_a_laptop_offers_and_serves_every_token():
    assert hosting.token_bound(245_569, hosted=False) == 245_569
    assert hosting.bounded_tokens(10**6, hosted=False) == 10**6


def test_a_shared_server_offers_and_serves_at_most_its_bound(monkeypatch):
    assert hosting.token_bound(245_569, hosted=True) == hosting.MAX_TOKENS
    assert hosting.token_bound(300, hosted=True) == 300  # a short split is offered whole
    assert hosting.bounded_tokens(10**6, hosted=True) == hosting.MAX_TOKENS
    assert hosting.bounded_tokens(10**6, hosted=True, limit=hosting.MAX_SWEEP_TOKENS) == hosting.MAX_SWEEP_TOKENS
    assert hosting.bounded_tokens(120, hosted=True) == 120
    monkeypatch.setattr(hosting, "MAX_TOKENS", 40)  # read when asked, not when the module loaded
    assert hosting.token_bound(1000, hosted=True) == hosting.bounded_tokens(1000, hosted=True) == 40
