from agent.caches import put_bounded


def test_put_bounded_returns_the_value_and_empties_a_full_cache_first() -> None:
    cache: dict[str, int] = {}
    for i in range(3):
        assert put_bounded(cache, f"k{i}", i, 3) == i
    assert cache == {"k0": 0, "k1": 1, "k2": 2}
    assert put_bounded(cache, "k3", 3, 3) == 3
    assert cache == {"k3": 3}  # emptied at the limit, then stored
