"The `adaptive-rnn` command line as a user runs it: a quick run, kill and resume, bad arguments, listing."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest

BIN = Path(sys.executable).parent / 'adaptive-rnn'
CMD = [str(BIN)] if BIN.exists() else [sys.executable, '-c', 'import sys; from adaptive_rnn.cli import main; sys.exit(main())']
QUICK = ['run', 'adding', '--model', 'lstm', '--quick', '--seed', '0']
FILES = {'config.json', 'log.csv', 'final.json'}


def cli(*args, **kw):
    env = dict(os.environ, MPLBACKEND='Agg')
    return subprocess.run(CMD + list(args), capture_output=True, text=True, env=env, **kw)


def log_of(d: Path) -> pd.DataFrame:
    return pd.read_csv(d / 'log.csv').drop(columns='wall_s')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "An uninterrupted quick run, timed."
    out = tmp_path_factory.mktemp('ref') / 'run'
    t = time.monotonic()
    r = cli(*QUICK, '--out', str(out), '--no-progress', timeout=300)
    return out, r, time.monotonic() - t


def test_quick_run_writes_the_three_files_in_time(reference):
    out, r, wall = reference
    assert r.returncode == 0, r.stderr
    assert FILES <= {p.name for p in out.iterdir()}
    assert wall < 120, f'quick run took {wall:.0f} s'
    log = pd.read_csv(out / 'log.csv')
    assert list(log.columns) == ['step', 'wall_s', 'loss', 'task_loss', 'budget_loss', 'metric', 'updates', 'ponder', 'repetitions', 'lr', 'flops']
    final = json.loads((out / 'final.json').read_text())
    assert final['steps'] == log.step.iloc[-1] and final['split'] == 'test'
    assert json.loads((out / 'config.json').read_text())['experiment'] == 'adding'
    assert 'updates per sequence' in r.stdout


def _start_and_stop(out: Path, sig: int, min_step: int, *extra):
    "Start the quick run, wait until the log reaches `min_step`, send `sig`; return the exit status."
    env = dict(os.environ, MPLBACKEND='Agg')
    p = subprocess.Popen(CMD + QUICK + ['--out', str(out), '--no-progress', *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        try:
            steps = pd.read_csv(out / 'log.csv').step
            if len(steps) and steps.iloc[-1] >= min_step: break
        except Exception: pass
        time.sleep(0.02)
    assert p.poll() is None, 'the run finished before it could be stopped'
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.parametrize('sig, extra', [(signal.SIGKILL, ['--checkpoint-every', '0']),   # checkpoint at the last step
                                         (signal.SIGKILL, ['--checkpoint-every', '0.5']), # an older checkpoint: rows after it are dropped
                                         (signal.SIGTERM, ['--checkpoint-every', '60'])]) # saved on the signal
def test_killed_run_resumes_to_the_same_log(reference, tmp_path, sig, extra):
    ref, r, _ = reference
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'run'
    code, err = _start_and_stop(out, sig, 400, *extra)
    assert code != 0
    assert (out / 'checkpoint.pt').exists() and not (out / 'final.json').exists()
    if sig == signal.SIGTERM: assert code == 143 and err.strip().count('\n') == 0 and 'resumes it' in err, err
    again = cli(*QUICK, '--out', str(out), '--no-progress', *extra, timeout=300)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(log_of(out), log_of(ref))
    a, b = (json.loads((d / 'final.json').read_text()) for d in (out, ref))
    for k in ('metric', 'loss', 'updates', 'steps', 'flops', 'solved'): assert a[k] == b[k], k


def test_finished_run_started_again_changes_nothing(reference, tmp_path):
    ref, r, _ = reference
    out = tmp_path / 'run'
    shutil.copytree(ref, out)
    before = (out / 'log.csv').read_text(), (out / 'final.json').read_text()
    again = cli(*QUICK, '--out', str(out), '--no-progress', timeout=120)
    assert again.returncode == 0, again.stderr
    assert ((out / 'log.csv').read_text(), (out / 'final.json').read_text()) == before


def test_other_settings_in_the_same_folder_are_refused(reference, tmp_path):
    ref, r, _ = reference
    out = tmp_path / 'run'
    shutil.copytree(ref, out)
    res = cli(*QUICK[:-1], '1', '--out', str(out), timeout=120)
    assert res.returncode == 2 and 'seed' in res.stderr and res.stderr.count('\n') == 1


BAD = {
    'unknown experiment': (['run', 'addng', '--model', 'lstm'], 'addng'),
    'unknown model': (['run', 'adding', '--model', 'lstn'], 'lstn'),
    'negative lambda': (['run', 'adding', '--model', 'skip_lstm', '--cost-per-sample', '-1e-4'], '--cost-per-sample'),
    'lambda not a number': (['run', 'adding', '--model', 'skip_lstm', '--cost-per-sample', 'abc'], '--cost-per-sample'),
    'negative tau': (['run', 'parity', '--model', 'act_rnn', '--tau', '-0.1'], '--tau'),
    'repeats 0': (['run', 'parity', '--model', 'repeat_rnn', '--repeats', '0'], '--repeats'),
    'knob of another model': (['run', 'adding', '--model', 'lstm', '--tau', '0.1'], 'tau'),
    'unwritable out': (['run', 'adding', '--model', 'lstm', '--quick', '--out', '/proc/adaptive_rnn_out'], 'out'),
    'no model': (['run', 'adding'], '--model'),
    'bad device': (['run', 'adding', '--model', 'lstm', '--device', 'tpu'], 'device'),
    'no command': (['frobnicate'], 'invalid choice'),
}


@pytest.mark.parametrize('name', list(BAD))
def test_bad_arguments_fail_with_one_line(name, capsys):
    from adaptive_rnn.cli import main
    args, word = BAD[name]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('adaptive-rnn: error:'), err
    assert word in err


@pytest.mark.parametrize('name', ['unknown experiment', 'negative lambda', 'unwritable out', 'no command'])
def test_bad_arguments_from_the_shell(name):
    "The installed command: exit status 2, one line, no traceback."
    args, word = BAD[name]
    r = cli(*args, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and r.stderr.startswith('adaptive-rnn: error:'), r.stderr
    assert word in r.stderr and 'Traceback' not in r.stderr


def test_cuda_without_cuda_is_one_line():
    import torch
    if torch.cuda.is_available(): pytest.skip('this machine has CUDA')
    r = cli('run', 'adding', '--model', 'lstm', '--device', 'cuda', timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'CUDA is not available' in r.stderr


def test_missing_dataset_names_what_to_download(tmp_path, capsys, monkeypatch):
    from adaptive_rnn.cli import main
    monkeypatch.chdir(tmp_path)                       # no data/ folder here
    monkeypatch.delenv('ADAPTIVE_RNN_DATA', raising=False)
    for name, word in (('imdb', 'aclImdb'), ('ucf101', 'UCF101TrainTestSplits')):
        assert main(['run', name, '--model', 'lstm', '--quick']) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and word in err, err
        assert main(['run', name, '--model', 'lstm', '--quick', '--data', str(tmp_path / 'none')]) == 2
        assert word in capsys.readouterr().err


def test_list_names_experiments_models_and_settings_and_help_stays_short():
    r = cli('list', timeout=120)
    assert r.returncode == 0, r.stderr
    for w in ('adding', 'frequency', 'mnist', 'parity', 'addition', 'imdb', 'ucf101', 'skip_gru', 'act_lstm', 'repeat_rnn',
              'random_skip_lstm', 'Adam lr 0.0001', '2,000,000 steps'):
        assert w in r.stdout, w
    for args in (['--help'], ['run', '--help'], ['sweep', '--help']):
        h = cli(*args, timeout=120)
        assert h.returncode == 0 and 'adaptive-rnn list' in h.stdout and 'Adam lr' not in h.stdout, args
        assert len(h.stdout.splitlines()) < 60, (args, len(h.stdout.splitlines()))


def test_bench_without_module_is_one_line(monkeypatch, capsys):
    import importlib.util
    from adaptive_rnn.cli import main
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'adaptive_rnn.bench' else find_spec(name, *a))
    assert main(['bench', 'layers', '--quick']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'adaptive_rnn.bench' in err


def test_main_in_process(tmp_path, capsys):
    from adaptive_rnn.cli import main
    assert main(['run', 'parity', '--model', 'rnn', '--quick', '--steps', '20', '--out', str(tmp_path / 'p'), '--no-progress']) == 0
    assert FILES <= {p.name for p in (tmp_path / 'p').iterdir()}
    assert main(['run', 'parity', '--model', 'act_lstm', '--repeats', '2']) == 2
    assert 'repeats' in capsys.readouterr().err


@pytest.mark.parametrize('exp, model, extra', [('parity', 'act_rnn', ['--tau', '0.01']), ('addition', 'repeat_lstm', ['--repeats', '2']),
                                               ('frequency', 'skip_gru', ['--cost-per-sample', '1e-4']), ('mnist', 'random_skip_lstm', [])])
def test_quick_runs_of_the_adaptive_models(tmp_path, exp, model, extra):
    from adaptive_rnn.cli import main
    assert main(['run', exp, '--model', model, *extra, '--quick', '--steps', '4', '--out', str(tmp_path / 'r'), '--no-progress']) == 0
    final, log = json.loads((tmp_path / 'r' / 'final.json').read_text()), pd.read_csv(tmp_path / 'r' / 'log.csv')
    assert final['steps'] == 4 and log.step.iloc[-1] == 4
    if model.startswith(('act', 'repeat')): assert final['ponder'] is not None and log.ponder.notna().all()
    if model == 'repeat_lstm': assert final['ponder'] == 2
    if exp == 'mnist': assert 0 < final['metric'] < 1 and final['updates'] < 784     # a held-out subset with every class


def _imdb_fixture(root: Path):
    "A tiny aclImdb folder: 40 reviews per class and split."
    words = {0: 'bad awful boring dull worst'.split(), 1: 'good great fine superb best'.split()}
    for split in ('train', 'test'):
        for label, c in enumerate(('neg', 'pos')):
            d = root / 'aclImdb' / split / c
            d.mkdir(parents=True)
            for i in range(40):
                text = ' '.join(words[label][(i + k) % 5] for k in range(8 + i % 5)) + ' the movie'
                (d / f'{i}_{7 if label else 2}.txt').write_text(text)


def _ucf_fixture(root: Path, classes=('ApplyEyeMakeup', 'Archery', 'Basketball')):
    "A tiny UCF-101 layout: split lists and (frames, 2048) features for 4 + 2 videos per class."
    import numpy as np
    lists, feats = root / 'ucfTrainTestlist', root / 'features'
    lists.mkdir(parents=True)
    (lists / 'classInd.txt').write_text(''.join(f'{i + 1} {c}\n' for i, c in enumerate(classes)))
    train, test = [], []
    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        (feats / c).mkdir(parents=True)
        for g in range(6):
            v = f'v_{c}_g{g + 1:02d}_c01'
            np.save(feats / c / f'{v}.npy', (rng.standard_normal((30 + g, 2048)) + i).astype(np.float32))
            (train if g < 4 else test).append(f'{c}/{v}.avi' + (f' {i + 1}' if g < 4 else ''))
    (lists / 'trainlist01.txt').write_text('\n'.join(train) + '\n')
    (lists / 'testlist01.txt').write_text('\n'.join(test) + '\n')


def test_imdb_and_ucf101_run_on_provided_data(tmp_path):
    from adaptive_rnn.cli import main
    _imdb_fixture(tmp_path / 'imdb')
    assert main(['run', 'imdb', '--model', 'skip_lstm', '--cost-per-sample', '1e-4', '--quick', '--steps', '3', '--data',
                 str(tmp_path / 'imdb'), '--out', str(tmp_path / 'ri'), '--no-progress']) == 0
    f = json.loads((tmp_path / 'ri' / 'final.json').read_text())
    assert f['steps'] == 3 and 0 <= f['metric'] <= 1 and 0 < f['updates'] <= 50
    _ucf_fixture(tmp_path / 'ucf')
    assert main(['run', 'ucf101', '--model', 'skip_gru', '--quick', '--steps', '2', '--data', str(tmp_path / 'ucf'),
                 '--out', str(tmp_path / 'ru'), '--no-progress']) == 0
    f = json.loads((tmp_path / 'ru' / 'final.json').read_text())
    assert f['steps'] == 2 and 0 < f['updates'] <= 25


def test_unknown_benchmark_is_one_line(tmp_path, capsys):
    from adaptive_rnn.cli import main
    assert main(['bench', 'no_such_benchmark', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and ('no_such_benchmark' in err or 'adaptive_rnn.bench' in err), err


def test_unknown_benchmark_is_one_line(capsys):
    from adaptive_rnn.cli import main
    assert main(['bench', 'no_such_benchmark']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no_such_benchmark' in err
