from sparsebench.timing import min_samples, quantile_ms


def test_tail_quantiles_need_enough_samples() -> None:
    assert min_samples(0.5) == 13 and min_samples(0.9) == 65 and min_samples(0.99) == 650
    samples = [i * 1_000_000 for i in range(1, 101)]  # 1..100 ms
    assert quantile_ms(samples, 0.5) == 50.5
    assert quantile_ms(samples, 0.9) is not None
    assert quantile_ms(samples, 0.99) is None
