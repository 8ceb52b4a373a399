from __future__ import annotations

import numpy as np
import pytest

from loadtest.distributions import IntDistribution, parse_int_distribution


def test_fixed_uniform_and_choice_are_parsed() -> None:
    assert parse_int_distribution("50") == IntDistribution("fixed", (50,))
    assert parse_int_distribution(" 10:200 ") == IntDistribution("uniform", (10, 200))
    assert parse_int_distribution("7:7") == IntDistribution("fixed", (7,))
    assert parse_int_distribution("16,64,128") == IntDistribution("choice", (16, 64, 128))
    assert str(parse_int_distribution("10:200")) == "U[10,200]"
    assert parse_int_distribution("10:200").mean == 105.0


@pytest.mark.parametrize("spec", ["", "0", "-3", "5:3", "a:b", "1:2:3", "4,x", "0:10", "1.5"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_int_distribution(spec)


def test_uniform_draws_cover_both_ends_and_nothing_outside() -> None:
    draws = parse_int_distribution("3:6").sample(np.random.default_rng(0), 2000)
    assert set(draws.tolist()) == {3, 4, 5, 6}


def test_fixed_and_choice_draws() -> None:
    rng = np.random.default_rng(1)
    assert parse_int_distribution("9").sample(rng, 5).tolist() == [9] * 5
    choice = parse_int_distribution("2,8").sample(rng, 500)
    assert set(choice.tolist()) == {2, 8}


def test_the_same_seed_gives_the_same_draws() -> None:
    spec = parse_int_distribution("10:200")
    first = spec.sample(np.random.default_rng(5), 100)
    again = spec.sample(np.random.default_rng(5), 100)
    other = spec.sample(np.random.default_rng(6), 100)
    assert first.tolist() == again.tolist() != other.tolist()
