"Campaigns from the command line: `adaptive-rnn sweep` (stopped and started again) and `adaptive-rnn report`; the registry's fixes."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import torch
from adaptive_rnn import train
from adaptive_rnn.experiments import run_experiment, settings, sweep_plan, report_table, EXPERIMENTS
from adaptive_rnn.cli import main

CMD = [sys.executable, '-m', 'adaptive_rnn.cli']
SHORT = ['--steps', '30', '--set', 'eval_every=10', '--set', 'val_size=64', '--set', 'test_size=64']
ENV = dict(os.environ, MPLBACKEND='Agg')


def finished(root: Path) -> set:
    return {p.parent.name for p in root.glob('adding/*/final.json')}


def test_sweep_stopped_and_started_again_finishes_only_the_missing_runs(tmp_path):
    args = CMD + ['sweep', 'adding', '--quick', '--seeds', '0-1', '--jobs', '2', '--root', str(tmp_path), '--no-progress', *SHORT]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while len(finished(tmp_path)) < 3 and time.monotonic() < deadline and p.poll() is None: time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 143 and 'run the same command to resume' in out, out   # an interrupted sweep says how to resume
    before = finished(tmp_path)
    assert 3 <= len(before) < 12, before
    r = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert finished(tmp_path) == {pl.out.name for pl in sweep_plan('adding', quick=True, seeds='0-1', root=tmp_path)}   # all 12
    again = [l.split()[2].rstrip(':') for l in r.stdout.splitlines() if l.startswith('already complete')]
    assert {Path(a).name for a in again} == before                                 # the finished ones were not run again
    assert '12 runs' not in r.stdout and 'weighs' in r.stdout and '0 failed' in r.stdout
    for name in before: assert (tmp_path / 'adding' / name / 'run.log').read_text().count('$ adaptive-rnn run') == 1

    rep = subprocess.run(CMD + ['report', 'adding', '--runs', str(tmp_path / 'adding' / '*_quick'), '--out', str(tmp_path / 'rep')],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert sorted(p.name for p in (tmp_path / 'rep').iterdir()) == ['curves.png', 'table.csv', 'table.md']
    t = pd.read_csv(tmp_path / 'rep' / 'table.csv', index_col=0)
    assert list(t.index) == ['LSTM', 'Skip LSTM, λ = 0', 'Skip LSTM, λ = 1e-05', 'GRU', 'Skip GRU, λ = 0', 'Skip GRU, λ = 1e-05']
    assert t['seeds'].str.startswith('2 (paper 4)').all()
    assert t['setting'].str.contains('quick settings').all() and t['setting'].str.contains('30 of 100,000 steps').all()
    md = (tmp_path / 'rep' / 'table.md').read_text()
    assert '81.1 ± 3.6 %' in md and 'Table 5.1' in md                             # the paper's numbers, from the registry


def test_a_failing_run_does_not_stop_the_others(tmp_path, capsys):
    bad = tmp_path / 'parity' / 'rnn_seed0_quick'; bad.mkdir(parents=True)
    (bad / 'config.json').write_text('{"experiment": "parity"}')
    code = main(['sweep', 'parity', '--quick', '--models', 'rnn,repeat_rnn', '--repeats', '2', '--seeds', '0', '--root', str(tmp_path),
                 '--no-progress', *SHORT])
    out = capsys.readouterr().out
    assert code == 1
    assert (tmp_path / 'parity' / 'repeat_rnn_rep2_seed0_quick' / 'final.json').exists()
    assert '1 failed' in out and 'another configuration' in out


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    assert main(['sweep', 'frequency', '--seeds', '0-1', '--root', str(tmp_path), '--dry-run']) == 0
    out = capsys.readouterr().out
    assert out.count('adaptive-rnn run frequency') == 32 and '32 runs (0 complete)' in out
    assert 'skip_gru_lam0.0001_Ts0.5_seed1' in out and not list(tmp_path.iterdir())


@pytest.mark.parametrize('args,words', [
    (['sweep', 'adding', '--seeds', 'x'], '`seeds`'),
    (['sweep', 'adding', '--models', 'lstn'], 'unknown model'),
    (['sweep', 'adding', '--models', 'lstm', '--tau', '0.1'], '`tau`'),
    (['sweep', 'adding', '--jobs', '0'], 'integer >= 1'),
    (['sweep', 'adding', '--set', 'stepz=3', '--dry-run'], "unknown setting 'stepz'"),
    (['run', 'adding', '--model', 'lstm', '--epochs', '2'], 'counted in `steps`'),
    (['report', 'addng'], 'unknown experiment'),
    (['sweep', 'adding', '--partition', 'gpu'], '--partition needs --executor slurm'),
    (['sweep', 'adding', '--executor', 'slurm', '--gpus-per-run', '1', '--quick'], "device='cuda'"),
    (['sweep', 'adding', '--executor', 'pbs'], 'invalid choice'),
])
def test_mistakes_are_one_line_errors(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and words in err, err


def test_unknown_settings_and_non_bool_quick_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown setting 'stepz'"): run_experiment('adding', 'lstm', quick=True, out=tmp_path, stepz=5)
    with pytest.raises(TypeError, match='`quick`'): run_experiment('adding', 'lstm', quick='no', out=tmp_path)
    with pytest.raises(ValueError, match='not both'): settings('mnist', steps=3, epochs=2)


def test_steps_and_epochs_replace_each_other():
    assert 'epochs' not in settings('mnist', steps=3) and settings('mnist', steps=3)['steps'] == 3
    assert settings('mnist', epochs=2)['epochs'] == 2 and 'steps' not in settings('mnist', epochs=2)


def test_act_runs_log_the_thesis_repetitions_and_are_not_clipped(tmp_path):
    r = run_experiment('parity', 'act_rnn', tau=0.01, quick=True, out=tmp_path, progress=False, steps=20, eval_every=10,
                       clip=None, task=dict(placement='first'))
    cfg = json.loads((tmp_path / 'config.json').read_text())
    assert cfg['settings']['clip'] is None and cfg['settings']['task']['placement'] == 'first'
    torch.testing.assert_close(torch.tensor(r.log.repetitions.values), torch.tensor(r.log.ponder.values) - 1)
    assert r.final['repetitions'] == pytest.approx(r.final['ponder'] - 1)
    plain = run_experiment('parity', 'repeat_rnn', repeats=3, quick=True, out=tmp_path / 'rep', progress=False, steps=10, eval_every=10)
    assert (plain.log.repetitions == 3).all()                                     # the Repeat RNN: rho


def test_big_checkpoints_stay_out_of_git(tmp_path, monkeypatch):
    monkeypatch.setattr(train, 'CHECKPOINT_GIT_LIMIT', 1000)
    run_experiment('adding', 'lstm', quick=True, out=tmp_path, progress=False, steps=5, eval_every=5)
    assert (tmp_path / '.gitignore').read_text() == 'checkpoint.pt\n'


def test_the_paper_settings_use_the_authors_initialisation():
    from adaptive_rnn.experiments import build_model
    net = build_model('adding', 'lstm', settings('adding'), 2)
    cell = net.core.cells[0]
    assert cell.init == 'glorot' and (cell.bias_ih.detach().view(4, -1)[1] == 1).all()
    assert build_model('parity', 'act_rnn', settings('parity'), 64).core.cell.init == 'torch'


def test_report_of_an_experiment_without_runs_shows_dashes(tmp_path):
    t = report_table('parity', runs=tmp_path / '*')
    assert len(t) == len(EXPERIMENTS['parity'].paper_rows) == 9
    assert (t['task solved: ours'] == '–').all() and (t['setting'] == '–').all()
    assert t.loc['ACT-RNN, τ = 0.01', 'steps until solved: paper'] == '53,000'


def test_a_run_folder_in_use_is_refused(tmp_path):
    from adaptive_rnn.train import run_folder_lock
    with run_folder_lock(tmp_path / 'r'):
        with pytest.raises(ValueError, match=f'process {os.getpid()} is training in it'):
            run_experiment('adding', 'lstm', quick=True, out=tmp_path / 'r', progress=False, steps=5, eval_every=5)
    r = run_experiment('adding', 'lstm', quick=True, out=tmp_path / 'r', progress=False, steps=5, eval_every=5)   # free again
    assert r.final['steps'] == 5


def test_a_finished_run_started_again_says_so(tmp_path, capsys):
    args = ['run', 'adding', '--model', 'lstm', '--quick', '--steps', '5', '--set', 'eval_every=5', '--out', str(tmp_path / 'r'), '--no-progress']
    assert main(args) == 0 and 'already complete' not in capsys.readouterr().out
    assert main(args) == 0 and 'already complete, nothing trained' in capsys.readouterr().out


def test_ctrl_c_exits_130_with_a_checkpoint(tmp_path):
    p = subprocess.Popen(CMD + ['run', 'adding', '--model', 'lstm', '--quick', '--steps', '100000', '--out', str(tmp_path / 'r'), '--no-progress'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (tmp_path / 'r' / 'log.csv').exists() and time.monotonic() < deadline: time.sleep(0.1)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'resumes it' in err, err
    assert torch.load(tmp_path / 'r' / 'checkpoint.pt', weights_only=True)['state']['step'] > 0


def test_version_and_the_benchmark_names(capsys):
    assert main(['--version']) == 0
    from adaptive_rnn import __version__
    assert capsys.readouterr().out.strip() == f'adaptive-rnn {__version__}'
    assert main(['bench', '--help']) == 0
    out = capsys.readouterr().out
    for name in ('layers', 'skip_inference', 'skip_train', 'act', 'train_step', 'all'): assert name in out


def test_bench_all_quick_writes_every_benchmark(tmp_path, capsys):
    assert main(['bench', 'all', '--quick', '--out', str(tmp_path)]) == 0
    assert {p.stem for p in tmp_path.glob('*.json')} == {'layers', 'skip_inference', 'skip_train', 'act', 'train_step'}


def test_a_sweep_through_submitit_runs_resumes_and_reports(tmp_path, capsys):
    "The Slurm path, through submitit's local executor: a job per run in its run folder; submitted again, finished runs are skipped."
    pytest.importorskip('submitit')
    args = ['sweep', 'parity', '--quick', '--models', 'rnn,repeat_rnn', '--repeats', '2', '--seeds', '0', '--root', str(tmp_path),
            '--no-progress', '--executor', 'submitit-local', '--wait', '--time', '10', *SHORT]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count('submitted ') == 2 and out.count('complete   ') == 2, out
    for name in ('rnn_seed0_quick', 'repeat_rnn_rep2_seed0_quick'):
        folder = tmp_path / 'parity' / name
        assert json.loads((folder / 'final.json').read_text())['steps'] == 30
        assert (folder / 'run.log').read_text().startswith('$ adaptive-rnn run parity')
    assert any((tmp_path / 'submitit' / 'parity').iterdir())                    # submitit's own logs
    assert main(args) == 0
    assert capsys.readouterr().out.count('already complete') == 2              # nothing submitted twice
    broken = tmp_path / 'parity' / 'rnn_seed0_quick'
    (broken / 'final.json').unlink(); (broken / 'config.json').write_text('{"experiment": "parity"}')
    assert main(args) == 1
    assert 'another configuration' in capsys.readouterr().out                   # a failed job: its last line, as locally


def test_an_unfinished_run_shows_its_latest_evaluation(tmp_path):
    "A run still going (no final.json) fills its row with the latest held-out values, marked unfinished."
    r = run_experiment('adding', 'skip_lstm', cost_per_sample=0, quick=True, out=tmp_path / 'skip_lstm_lam0_seed0', progress=False,
                       steps=30, eval_every=10, val_size=64, test_size=64)
    (tmp_path / 'skip_lstm_lam0_seed0' / 'final.json').unlink()
    t = report_table('adding', runs=[str(tmp_path / 'skip_lstm_lam0_seed0')])
    row = t.loc['Skip LSTM, λ = 0']
    assert 'unfinished' in row['seeds'] and row['steps'] == '30'
    assert row['state updates (%): ours'] == f"{100 * r.log.updates.iloc[-1] / 20:.1f} %"
