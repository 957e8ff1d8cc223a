"""The pure figures of bench/master_tier.py: how trainers are spread, and what "trainers held" means."""

from bench.master_tier import held, spread, tier_held


def test_spread_is_even_and_keeps_the_total() -> None:
    assert spread(8, 3) == [3, 3, 2]
    assert spread(32, 2) == [16, 16]
    assert spread(2, 3) == [1, 1, 0]
    assert all(sum(spread(n, m)) == n for n in range(40) for m in range(1, 5))


def test_held_is_the_largest_count_at_95_percent_accepted() -> None:
    rows = [{"n": 4, "accepted": 100, "expected": 100}, {"n": 16, "accepted": 95, "expected": 100},
            {"n": 64, "accepted": 94, "expected": 100}, {"n": 128, "accepted": 0, "expected": 0}]
    assert held(rows) == 16
    assert held([{"n": 4, "accepted": 10, "expected": 100}]) == 0


def test_the_tier_holds_a_count_only_if_every_master_does() -> None:
    ok, bad = {"n": 4, "accepted": 99, "expected": 100}, {"n": 4, "accepted": 50, "expected": 100}
    assert tier_held({8: [ok, ok], 32: [ok, bad], 16: [ok, ok]}) == 16
    assert tier_held({8: [bad, ok]}) == 0
    idle = {"n": 0, "accepted": 0, "expected": 0}  # 2 trainers over 3 masters: one master has none
    assert tier_held({2: [ok, ok, idle]}) == 2
    assert tier_held({0: [idle, idle]}) == 0
