"""Progress weighted by the real work of each stage, with a time estimate; help texts."""

import pytest

from components.guide import HELP, WorkProgress, model_cost, stage_weights
from components.results import AnalysisSettings


def test_sweep_share_is_its_cost_share():
    s = AnalysisSettings(num_states=8, sweep_states="2,4,8,16")
    train, sweep = stage_weights(s)
    costs = [model_cost(s, k) for k in (2, 4, 8, 16)]
    assert sweep == pytest.approx(sum(costs) / (model_cost(s, 8) + sum(costs)))
    assert train + sweep == pytest.approx(1.0) and sweep > 0.75  # the sweep is most of this run
    assert stage_weights(AnalysisSettings(num_states=8, sweep_states="")) == (1.0, 0.0)
    # semi-Markov chains cost K(K + 4 Dmax): more than the plain HMM's K^2
    hs = AnalysisSettings(model_type="semi-markov", num_states=8)
    assert model_cost(hs, 8) - model_cost(AnalysisSettings(num_states=8), 8) == 8 * 4 * hs.max_duration


def test_progress_is_monotone_and_estimates_time_left():
    s = AnalysisSettings(num_states=8, sweep_states="2,4,8,16")
    seen = []
    now = [0.0]
    prog = WorkProgress(s, lambda f, m: seen.append((f, m)), clock=lambda: now[0])
    # the pipeline's sequence: load, features, EM iterations, decoding, sweep models
    steps = [(0.0, "loading audio"), (0.05, "features")] + [(0.1 + 0.7 * i / 20, f"EM iteration {i}/20")
                                                             for i in range(1, 21)]
    steps += [(0.85, "decoding")] + [(0.88 + 0.1 * i / 4, f"BIC/AIC sweep: {i}/4 models") for i in range(1, 5)]
    for f, m in steps:
        now[0] += 0.5
        prog(f, m)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.97)
    # after training, the bar is at the training share only (not the pipeline's 85 %)
    decoding = next(f for f, m in seen if m.startswith("decoding"))
    assert decoding == pytest.approx(0.04 + 0.93 * stage_weights(s)[0])
    assert decoding < 0.3
    last = seen[-1][1]
    assert "empty 'Sweep state counts' to skip it" in last and "s left" in last
    # the estimate is elapsed * (1 - f) / f
    f, m = seen[10]
    elapsed = 0.5 * 11
    assert f"about {elapsed * (1 - f) / f:.0f} s left" in m


def test_every_analyze_control_has_help():
    for key in ("topology", "tol", "deltas", "sweep_states", "num_states", "decoder"):
        assert len(HELP[key]) > 30
    assert "Bakis" in HELP["topology"] and "faster" in HELP["sweep_states"]
