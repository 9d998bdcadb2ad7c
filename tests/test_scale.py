"Beyond one process: data-parallel training under torchrun (gloo, loopback) takes the steps one process takes."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

SHORT = ['--quick', '--steps', '30', '--set', 'eval_every=10', '--set', 'val_size=64', '--set', 'test_size=64', '--no-progress',
         '--threads', '1']
ENV = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1')
TORCHRUN = Path(sys.executable).with_name('torchrun')


@pytest.mark.skipif(not TORCHRUN.exists(), reason='torchrun is not installed beside this Python')
@pytest.mark.parametrize('model', [['lstm'], ['skip_gru', '--cost-per-sample', '1e-3']])
def test_two_processes_of_half_the_batch_equal_one_process(tmp_path, model):
    "2 × batch 32 (torchrun, DistributedDataParallel over gloo on 127.0.0.1) gives one process' batch-64 curve."
    one = subprocess.run([sys.executable, '-m', 'adaptive_rnn.cli', 'run', 'adding', '--model', *model, *SHORT, '--out', str(tmp_path / 'one')],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([str(TORCHRUN), '--nproc-per-node', '2', '--master-addr', '127.0.0.1', '--master-port', str(29500 + os.getpid() % 1000),
                          '-m', 'adaptive_rnn.cli', 'run', 'adding', '--model', *model, *SHORT, '--out', str(tmp_path / 'two')],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count('wrote ') == 1                                   # only rank 0 reports and writes
    a, b = (pd.read_csv(tmp_path / n / 'log.csv') for n in ('one', 'two'))
    assert list(a.step) == list(b.step) == [0, 10, 20, 30]
    pd.testing.assert_series_equal(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    pd.testing.assert_series_equal(a.updates, b.updates, rtol=1e-4, atol=1e-4)
    fa, fb = (json.loads((tmp_path / n / 'final.json').read_text()) for n in ('one', 'two'))
    assert (fa['processes'], fb['processes']) == (1, 2) and abs(fa['metric'] - fb['metric']) < 1e-5
    assert json.loads((tmp_path / 'one' / 'config.json').read_text())['settings'] == json.loads((tmp_path / 'two' / 'config.json').read_text())['settings']


def test_a_batch_that_does_not_divide_is_refused(monkeypatch):
    import torch
    from torch import nn
    from adaptive_rnn import train
    class Two(train.DataParallel):
        def __init__(self): super().__init__(); self.on, self.world = True, 3
    monkeypatch.setattr(train, 'DataParallel', Two)
    model = train.SequenceModel(nn.LSTM(1, 4, batch_first=True), 4, 1)
    with pytest.raises(ValueError, match='`batch_size` 64 must divide among the 3 processes'):
        train.fit(model, lambda b, g: (torch.randn(b, 5, 1), torch.randn(b, 1)), (torch.randn(4, 5, 1), torch.randn(4, 1)),
                  loss_fn=nn.functional.mse_loss, metric_fn=lambda p, y: -nn.functional.mse_loss(p, y), steps=1, batch_size=64, progress=False)
