"Plots run headless and return axes; smoothing handles every curve length; the paper-vs-ours table."
import json, math, os
os.environ.setdefault('MPLBACKEND', 'Agg')
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.signal import savgol_filter
from adaptive_rnn.plots import (smooth, learning_curves, plot_used_samples, plot_used_pixels, plot_ponder, ponder_frame, ponder_boxplot,
                                paper_vs_ours, read_finals, run_label)
from adaptive_rnn.train import write_log


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


@pytest.mark.parametrize('n', list(range(0, 12)) + [70, 71, 72, 500])
def test_smooth_any_length(n):
    y = np.random.default_rng(n).standard_normal(n)
    s = smooth(y)
    assert s.shape == (n,) and np.isfinite(s).all()
    w = n if n % 2 else n - 1
    if w <= 3: np.testing.assert_array_equal(s, y)                        # no odd window longer than the degree fits
    elif n >= 71: np.testing.assert_allclose(s, savgol_filter(y, 71, 3))  # the thesis' filter
    else: np.testing.assert_allclose(s, savgol_filter(y, n if n % 2 else n - 1, 3))


@given(st.lists(st.floats(-1e3, 1e3, allow_subnormal=False), max_size=150), st.sampled_from([5, 11, 71]), st.integers(0, 4))
@settings(max_examples=60, deadline=None)
def test_smooth_property_length_and_polynomials(ys, window, order):
    if order >= window: order = window - 1
    s = smooth(ys, window, order)
    assert len(s) == len(ys)
    t = np.arange(len(ys), dtype=float)
    line = 0.5 * t - 3
    np.testing.assert_allclose(smooth(line, window, max(order, 1)), line, atol=1e-6)   # polynomials of degree <= order pass unchanged


def test_smooth_bad_arguments():
    with pytest.raises(ValueError, match='odd'): smooth([1., 2., 3.], window=4)
    with pytest.raises(ValueError, match='order'): smooth([1., 2., 3.], window=5, order=5)
    with pytest.raises(ValueError, match='one-dimensional'): smooth(np.zeros((3, 3)))


def make_runs(root: Path, name: str, seeds=3, n=40, final=None):
    for s in range(seeds):
        d = root / f'{name}_seed{s}'
        d.mkdir(parents=True)
        rows = [dict(step=10 * i, wall_s=0., loss=1 / (i + 1), task_loss=1 / (i + 1), budget_loss=0., metric=1 - 1 / (i + 2) + 0.01 * s,
                     updates=50. - s, ponder=math.nan, lr=1e-3, flops=0.) for i in range(n)]
        write_log(d / 'log.csv', rows)
        if final is not False: (d / 'final.json').write_text(json.dumps(dict(metric=0.9 + 0.01 * s, updates=50. - s, solved=s > 0)))


def test_learning_curves_from_folders_frames_and_globs(tmp_path):
    make_runs(tmp_path, 'skip_lstm_lam1e-05'); make_runs(tmp_path, 'lstm', n=5)   # 5 points: shorter than the window
    ax = learning_curves(str(tmp_path / '*'))
    assert isinstance(ax, plt.Axes) and len(ax.get_legend().get_texts()) == 2
    ax = learning_curves({'a': [pd.read_csv(tmp_path / 'lstm_seed0' / 'log.csv')]}, y='loss', band='std', logy=True)
    assert ax.get_yscale() == 'log'
    fig, axs = plt.subplots(1, 2)
    assert learning_curves([tmp_path / 'lstm_seed0', tmp_path / 'lstm_seed1'], ax=axs[1], band=None) is axs[1]
    assert run_label(tmp_path / 'skip_lstm_lam1e-05_seed3') == 'skip_lstm_lam1e-05'


def test_used_samples_and_pixels_return_axes():
    x, u = np.random.rand(50, 2), (np.arange(50) % 3 == 0).astype(float)
    ax = plot_used_samples(x, u, markers=1)
    assert isinstance(ax, plt.Axes) and '17 of 50' in ax.get_title()
    assert isinstance(plot_used_samples(torch.rand(784, 1), torch.ones(784), image_shape=(28, 28)), plt.Axes)
    assert isinstance(plot_used_pixels(torch.rand(784), torch.zeros(784)), plt.Axes)
    with pytest.raises(ValueError, match='steps'): plot_used_samples(x, u[:10])
    with pytest.raises(ValueError, match='784'): plot_used_pixels(np.zeros(100), np.zeros(100))


def test_ponder_plots_return_axes():
    p = 1 + torch.rand(16, 5) * 3
    assert isinstance(plot_ponder(p), plt.Axes) and isinstance(plot_ponder(p[0]), plt.Axes)
    df = pd.concat([ponder_frame(p, tau=0.01), ponder_frame(p + 1, tau=0.001)])
    assert list(df.columns) == ['step', 'ponder', 'tau'] and len(df) == 160
    assert isinstance(ponder_boxplot(df), plt.Axes)
    assert isinstance(ponder_boxplot(p), plt.Axes)
    with pytest.raises(ValueError, match='ponder'): ponder_boxplot(df.rename(columns={'ponder': 'rho'}))


def test_paper_vs_ours(tmp_path):
    make_runs(tmp_path, 'lstm'); make_runs(tmp_path, 'gru', seeds=2)
    make_runs(tmp_path, 'unfinished', seeds=1, final=False)
    rows = [dict(model='LSTM', paper={'accuracy': '0.910 ± 0.045', 'solved': 'Yes'}, runs=str(tmp_path / 'lstm_seed*')),
            dict(model='GRU', paper={'accuracy': '0.968 ± 0.013', 'solved': 'Yes'}, runs=[tmp_path / 'gru_seed0', tmp_path / 'gru_seed1']),
            dict(model='none yet', paper={'accuracy': '1.0'}, runs=str(tmp_path / 'unfinished_seed*'))]
    t = paper_vs_ours(rows, quantities={'accuracy': 'metric', 'solved': 'solved'}, fmt='{:.3f}')
    assert list(t.index) == ['LSTM', 'GRU', 'none yet']
    assert t.loc['LSTM', ('accuracy', 'paper')] == '0.910 ± 0.045'
    assert t.loc['LSTM', ('accuracy', 'ours: mean ± std over N seeds')] == '0.910 ± 0.010'
    assert t.loc['GRU', ('solved', 'ours: mean ± std over N seeds')] == '1/2'
    assert t.loc['none yet', ('accuracy', 'ours: mean ± std over N seeds')] == '—'
    assert t[('', 'N seeds')].tolist() == [3, 2, 0]
    same = paper_vs_ours(rows[:1], quantities={'accuracy': 'metric'})
    assert same.columns.get_level_values(1).tolist() == ['paper', 'ours: mean ± std over 3 seeds']
    assert len(read_finals(str(tmp_path / '*'))) == 5
