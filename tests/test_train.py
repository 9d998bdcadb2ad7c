"The training loop: model wrapper, costs, determinism, exact resume from any step, checkpoints, devices, early stopping."
import json, math
from pathlib import Path
from types import SimpleNamespace
import pandas as pd
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from adaptive_rnn.train import (SequenceModel, ModelOutput, compute_cost, macs_per_update, seed_everything, get_device, TensorSampler,
                                DatasetSampler, evaluate, fit, LOG_COLUMNS, Interrupted, unpack_core)

torch.set_num_threads(1)


def task(batch_size, generator=None):
    x = torch.rand(batch_size, 8, 1, generator=generator) * 2 - 1
    return x, 4 * x.mean(1)


VAL = task(128, torch.Generator().manual_seed(7))
mse = lambda p, y: F.mse_loss(p, y)


class Fake(nn.Module):
    "An LSTM that also returns `updates` or `ponder` (and random ones, to exercise the RNG state)."
    def __init__(self, kind='updates'):
        super().__init__()
        self.lstm, self.kind, self.w = nn.LSTM(1, 8, batch_first=True), kind, nn.Parameter(torch.zeros(()))
    def forward(self, x):
        out, state = self.lstm(x)
        B, T = x.shape[:2]
        u = (torch.rand(B, T) < torch.sigmoid(self.w + 1)).float()
        u = u + torch.sigmoid(self.w) - torch.sigmoid(self.w).detach()   # straight-through, so lambda has a gradient
        p = (1 + torch.sigmoid(self.w)).expand(B, T)
        return SimpleNamespace(output=out, state=state, updates=u if self.kind == 'updates' else None,
                               ponder=p if self.kind == 'ponder' else None, steps=torch.ones(B, T) if self.kind == 'ponder' else None)


def run(core=None, out=None, steps=60, **kw):
    torch.manual_seed(0)
    core = core() if callable(core) and not isinstance(core, nn.Module) else core   # a factory: built after seeding
    m = SequenceModel(core if core is not None else nn.GRU(1, 8, batch_first=True), 8, 1)
    kw = dict(dict(loss_fn=mse, metric_fn=mse, steps=steps, batch_size=16, lr=1e-2, eval_every=10, higher_is_better=False,
                   progress=False), **kw)
    return fit(m, task, VAL, out=out, **kw)


def no_wall(df): return df.drop(columns='wall_s').reset_index(drop=True)


def test_unpack_and_wrapper_handle_three_kinds_of_cores():
    x = torch.randn(3, 5, 1)
    for core, n in ((nn.LSTM(1, 8, batch_first=True), 5.), (Fake('ponder'), 5.)):
        o = SequenceModel(core, 8, 2)(x)
        assert isinstance(o, ModelOutput) and o.prediction.shape == (3, 2)
        assert torch.equal(o.n_updates, torch.full((3,), n))
    o = SequenceModel(Fake('updates'), 8, 2, readout='all')(x)
    assert o.prediction.shape == (3, 5, 2) and o.updates.shape == (3, 5)
    with pytest.raises(TypeError, match='output'): unpack_core(torch.zeros(2))


def test_costs_use_the_skip_and_act_definitions():
    skip = pytest.importorskip('adaptive_rnn.skip')
    u = torch.tensor([[1., 0., 1.], [1., 1., 1.]])
    o = ModelOutput(torch.zeros(2, 1), updates=u)
    torch.testing.assert_close(compute_cost(o, cost_per_sample=0.5), skip.budget_loss(u, 0.5))
    torch.testing.assert_close(compute_cost(o, cost_per_sample=0.5), torch.tensor(0.5 * 2.5))
    assert compute_cost(o).item() == 0
    try: import adaptive_rnn.act as act
    except ImportError: return
    p = torch.full((2, 4), 1.5)
    torch.testing.assert_close(compute_cost(ModelOutput(torch.zeros(2, 1), ponder=p), tau=0.1), act.ponder_cost(p, 0.1))


def test_macs_match_the_slides():
    assert round(784 * macs_per_update(nn.LSTM(1, 110)) / 1e7, 2) == 3.83


def test_same_seed_same_log_other_seed_other_log():
    a, b, c = run(), run(), run(lambda: nn.GRU(1, 8, batch_first=True), seed=1)
    pd.testing.assert_frame_equal(no_wall(a.log), no_wall(b.log))
    assert not no_wall(a.log).equals(no_wall(c.log))
    assert list(a.log.columns) == list(LOG_COLUMNS) and a.log.step.tolist() == list(range(0, 61, 10))


@pytest.mark.parametrize('kind', ['updates', 'ponder'])
def test_budget_and_ponder_are_logged(kind):
    r = run(lambda: Fake(kind), cost_per_sample=1e-2 if kind == 'updates' else 0., tau=1e-2 if kind == 'ponder' else 0.)
    log = r.log
    assert (log.budget_loss > 0).all()
    assert ((log.loss - log.task_loss - log.budget_loss).abs() < 1e-6).all()
    assert log.ponder.isna().all() if kind == 'updates' else log.ponder.notna().all()
    assert (log.flops == log.updates * macs_per_update(r.model.core)).all()


class Crash(Exception): pass


def crash_at(k):
    def cb(step, row):
        if step == k: raise Crash
    return cb


@pytest.mark.parametrize('kill_at', [1, 9, 10, 11, 37, 59])
@pytest.mark.parametrize('kind', ['plain', 'updates'])
def test_resume_from_any_step_gives_the_same_log(tmp_path, kill_at, kind):
    core = lambda: nn.GRU(1, 8, batch_first=True) if kind == 'plain' else Fake('updates')
    kw = dict(checkpoint_every=0, cost_per_sample=1e-3 if kind == 'updates' else 0.)
    full = run(core, tmp_path / 'full', **kw)
    with pytest.raises(Crash): run(core, tmp_path / 'k', callback=crash_at(kill_at), **kw)
    assert not (tmp_path / 'k' / 'final.json').exists()
    resumed = run(core, tmp_path / 'k', **kw)
    pd.testing.assert_frame_equal(no_wall(resumed.log), no_wall(full.log))
    pd.testing.assert_frame_equal(no_wall(pd.read_csv(tmp_path / 'k' / 'log.csv')), no_wall(pd.read_csv(tmp_path / 'full' / 'log.csv')))
    for p, q in zip(resumed.model.parameters(), full.model.parameters()): assert torch.equal(p, q)


def test_resume_with_an_older_checkpoint_drops_later_rows(tmp_path):
    full = run(out=tmp_path / 'full', checkpoint_every=0)
    with pytest.raises(Crash): run(out=tmp_path / 'k', checkpoint_every=0, callback=crash_at(25))
    ck = torch.load(tmp_path / 'k' / 'checkpoint.pt', weights_only=True)
    with pytest.raises(Crash): run(out=tmp_path / 'k', checkpoint_every=1e9, callback=crash_at(45))   # no checkpoint after 25
    assert pd.read_csv(tmp_path / 'k' / 'log.csv').step.iloc[-1] == 40                                  # rows past the checkpoint
    assert torch.load(tmp_path / 'k' / 'checkpoint.pt', weights_only=True)['state']['step'] == ck['state']['step'] == 25
    resumed = run(out=tmp_path / 'k', checkpoint_every=0)
    pd.testing.assert_frame_equal(no_wall(resumed.log), no_wall(full.log))


def test_dataset_sampler_position_is_resumed(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 8, 1, generator=g) * 2 - 1
    data = (x, 4 * x.mean(1))
    def go(**kw):
        torch.manual_seed(0)
        return fit(SequenceModel(nn.GRU(1, 8, batch_first=True), 8, 1), TensorSampler(*data), VAL, loss_fn=mse, metric_fn=mse, steps=40,
                   batch_size=16, eval_every=10, higher_is_better=False, progress=False, checkpoint_every=0, **kw)
    full = go(out=tmp_path / 'f')
    with pytest.raises(Crash): go(out=tmp_path / 'k', callback=crash_at(13))   # mid-epoch (3 batches per epoch)
    pd.testing.assert_frame_equal(no_wall(go(out=tmp_path / 'k').log), no_wall(full.log))


def test_checkpoint_loads_with_weights_only_and_holds_everything(tmp_path):
    run(out=tmp_path / 'r', steps=20, checkpoint_every=0)
    c = torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)
    assert {'model', 'optimizer', 'rng', 'state', 'sampler'} <= set(c)
    assert {'python', 'numpy', 'torch', 'cuda', 'data'} <= set(c['rng'])
    assert c['state']['step'] == 20 and c['state']['done'] and len(c['state']['rows']) == 3
    assert not any(p.name.endswith('.tmp') for p in (tmp_path / 'r').iterdir())


def test_finished_run_is_not_trained_again(tmp_path):
    a = run(out=tmp_path / 'r', steps=20)
    b = run(out=tmp_path / 'r', steps=20)
    assert a.final == b.final
    pd.testing.assert_frame_equal(a.log, b.log)


def test_config_mismatch_is_refused(tmp_path):
    run(out=tmp_path / 'r', steps=10, config=dict(lr=0.01, seed=0))
    with pytest.raises(ValueError, match='differs in lr'): run(out=tmp_path / 'r', steps=10, config=dict(lr=0.1, seed=0))


def test_sigterm_saves_and_raises(tmp_path):
    import os, signal
    def term(step, row):
        if step == 17: os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Interrupted, match='step 18|step 17'): run(out=tmp_path / 'r', checkpoint_every=1e9, callback=term)
    step = torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)['state']['step']
    assert step in (17, 18)
    full = run(out=tmp_path / 'f')
    pd.testing.assert_frame_equal(no_wall(run(out=tmp_path / 'r').log), no_wall(full.log))
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler) or callable(signal.getsignal(signal.SIGTERM))


def test_early_stopping_solved_and_patience():
    r = run(steps=300, solved=lambda h: h[-1] < 0.05, stop_when_solved=True)
    assert r.final['stopped'] == 'solved' and r.final['steps'] == r.final['solved_step'] < 300
    r = run(steps=300, lr=0.0, patience=2)   # nothing improves with lr 0
    assert r.final['stopped'] == 'patience' and r.final['steps'] == 20   # evaluations at 10 and 20 without improvement
    r = run(steps=30, solved=lambda h: True)  # recorded, not stopping
    assert r.final['solved_step'] == 0 and r.final['steps'] == 30


def test_final_json_contents(tmp_path):
    r = run(out=tmp_path / 'r', steps=20, test=task(64, torch.Generator().manual_seed(9)))
    f = json.loads((tmp_path / 'r' / 'final.json').read_text())
    assert f == r.final and f['split'] == 'test' and f['steps'] == 20 and f['device'] == 'cpu'
    assert f['torch'] == torch.__version__ and f['ponder'] is None and f['updates'] == 8.0 and f['wall_s'] >= 0


def test_evaluate_accepts_a_dataset():
    m = SequenceModel(nn.GRU(1, 8, batch_first=True), 8, 1)
    ds = list(zip(*VAL))
    a, b = evaluate(m, VAL, mse, mse, batch_size=50), evaluate(m, ds, mse, mse, batch_size=50)
    for k in ('loss', 'metric', 'updates'): assert math.isclose(a[k], b[k], rel_tol=1e-6)
    x, y = DatasetSampler(ds)(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 8, 1) and y.shape == (10, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match='steps'): run(steps=0)
    with pytest.raises(ValueError, match='cost_per_sample'): run(cost_per_sample=-1.)
    with pytest.raises(ValueError, match='tau'): run(tau=float('nan'))
    with pytest.raises(ValueError, match='device'): get_device('gpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'): get_device('cuda')
    with pytest.raises(ValueError, match='seed'): seed_everything(-3)
    with pytest.raises(ValueError, match='writable'): run(out='/proc/adaptive_rnn_run')
    with pytest.raises(ValueError, match='readout'): SequenceModel(nn.GRU(1, 8), 8, 1, readout='mean')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_run_and_resume(tmp_path):
    full = run(out=tmp_path / 'f', device='cuda', checkpoint_every=0)
    with pytest.raises(Crash): run(out=tmp_path / 'k', device='cuda', checkpoint_every=0, callback=crash_at(33))
    resumed = run(out=tmp_path / 'k', device='cuda', checkpoint_every=0)
    pd.testing.assert_frame_equal(no_wall(resumed.log), no_wall(full.log))
    assert full.final['device'].startswith('cuda')


def test_fit_restores_denormal_flushing_and_threads():
    from adaptive_rnn.train import denormals_flushed
    torch.set_flush_denormal(False)
    n = torch.get_num_threads()
    run(steps=5, num_threads=1)
    assert not denormals_flushed() and torch.get_num_threads() == n
    with pytest.raises(Crash): run(steps=5, callback=crash_at(2))
    assert not denormals_flushed()


def test_checkpoint_every_n_steps(tmp_path):
    with pytest.raises(Crash): run(out=tmp_path / 'r', checkpoint_every=1e9, checkpoint_steps=7, callback=crash_at(30))
    assert torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)['state']['step'] == 28
    pd.testing.assert_frame_equal(no_wall(run(out=tmp_path / 'r', checkpoint_every=1e9, checkpoint_steps=7).log), no_wall(run().log))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_step(tmp_path):
    calls = []
    def nan_after(p, y):
        calls.append(1)
        return mse(p, y) * (float('nan') if len(calls) > 26 else 1.)   # (evaluations call it too: 26 calls = 23 training steps here)
    with pytest.warns(RuntimeWarning, match='non-finite loss at step'):
        r = run(out=tmp_path / 'r', steps=60, loss_fn=nan_after)
    f = json.loads((tmp_path / 'r' / 'final.json').read_text())
    assert f['stopped'].startswith('non-finite loss at step') and f['steps'] < 60
    c = torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)
    assert c['state']['step'] == f['steps'] and all(torch.isfinite(v).all() for v in c['model'].values())
    assert not any(p.name.endswith('.tmp') for p in (tmp_path / 'r').iterdir())
    again = run(out=tmp_path / 'r', steps=60, loss_fn=nan_after)          # the stop is final: nothing trains again
    assert again.already_complete and again.final == f


def test_a_non_finite_gradient_stops_the_run(tmp_path):
    class NaNGrad(torch.autograd.Function):
        "The identity, whose backward pass returns NaN."
        @staticmethod
        def forward(ctx, x): return x.clone()
        @staticmethod
        def backward(ctx, g): return g * float('nan')
    class Bomb(nn.Module):
        "A GRU whose gradient turns to NaN from the 5th training step on (its loss stays finite)."
        def __init__(self): super().__init__(); self.gru, self.n = nn.GRU(1, 8, batch_first=True), 0
        def forward(self, x):
            out, s = self.gru(x)
            if self.training: self.n += 1
            return (NaNGrad.apply(out) if self.training and self.n >= 5 else out), s
    with pytest.warns(RuntimeWarning, match='non-finite gradient at step 5'):
        r = run(Bomb(), out=tmp_path / 'r', steps=30, clip=None)
    assert r.final['stopped'] == 'non-finite gradient at step 5' and r.final['steps'] == 4


def test_sigint_saves_and_raises_with_its_number(tmp_path):
    import os, signal
    def ctrl_c(step, row):
        if step == 12: os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(Interrupted) as e: run(out=tmp_path / 'r', checkpoint_every=1e9, callback=ctrl_c)
    assert e.value.signum == signal.SIGINT
    assert torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)['state']['step'] in (12, 13)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize('kw,words', [(dict(clip=-1.), '`clip`'), (dict(clip=float('nan')), '`clip`'), (dict(patience=0), 'patience'),
                                      (dict(patience=-1), 'patience'), (dict(eval_batch_size=0), 'eval_batch_size'),
                                      (dict(num_threads=-1), 'num_threads'), (dict(checkpoint_every='abc'), 'checkpoint_every'),
                                      (dict(checkpoint_steps=0), 'checkpoint_steps')])
def test_fit_rejects_bad_settings_by_name(kw, words):
    with pytest.raises(ValueError, match=words): run(steps=5, **kw)
