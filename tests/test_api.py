"The public surface: torch.nn's defaults, top-level imports, and help() that documents every argument."
import pydoc, pytest, torch
from torch import nn
import adaptive_rnn
from adaptive_rnn import (RNN, LSTM, GRU, SkipRNN, SkipLSTM, SkipGRU, RandomSkipLSTM, ACT, RepeatRNN, RepeatSkip,
                          RNNCell, LSTMCell, GRUCell)


@pytest.mark.parametrize('ours, theirs', [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)])
def test_drop_in_for_torch_nn_on_time_major_data(ours, theirs):
    "`nn.LSTM(10, 20)` swapped for ours on (T, B, I) data gives the same numbers: the defaults are torch.nn's."
    torch.manual_seed(0)
    ref = theirs(10, 20, 2)
    m = ours.from_torch(ref)
    assert m.batch_first is False and ours(10, 20).batch_first is False
    x = torch.randn(7, 3, 10)                                     # (T, B, I)
    (y, s), (y_ref, s_ref) = m(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    fresh = ours(10, 20, 2); fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(fresh(x)[0], y_ref, rtol=1e-5, atol=1e-5)


def _models():
    yield 'skip_lstm', lambda bf: SkipLSTM(3, 5, num_layers=2, batch_first=bf)
    yield 'skip_gru', lambda bf: SkipGRU(3, 5, batch_first=bf)
    yield 'random_skip', lambda bf: RandomSkipLSTM(3, 5, batch_first=bf)
    yield 'act', lambda bf: ACT(LSTMCell(4, 5), max_ponder=4, batch_first=bf)
    yield 'repeat', lambda bf: RepeatRNN(GRUCell(4, 5), 2, batch_first=bf)
    yield 'repeat_skip', lambda bf: RepeatSkip(SkipRNN(4, 5, batch_first=bf), 2)


@pytest.mark.parametrize('name, make', list(_models()))
def test_every_model_is_time_major_by_default_and_equal_to_batch_first(name, make):
    torch.manual_seed(1)
    bf, tm = make(True), make(False)
    tm.load_state_dict(bf.state_dict())
    default = {'skip_lstm': SkipLSTM(3, 5), 'skip_gru': SkipGRU(3, 5), 'random_skip': RandomSkipLSTM(3, 5),
               'act': ACT(LSTMCell(4, 5)), 'repeat': RepeatRNN(GRUCell(4, 5), 2),
               'repeat_skip': RepeatSkip(SkipRNN(4, 5), 2)}[name]
    assert default.batch_first is False
    x = torch.randn(2, 6, 3)                                      # (B, T, I), six steps for two sequences
    torch.manual_seed(2); a = bf(x)
    torch.manual_seed(2); b = tm(x.transpose(0, 1))
    torch.testing.assert_close(b[0].transpose(0, 1), a[0])
    assert b[0].shape == (6, 2, 5)


@pytest.mark.parametrize('cls', [RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU, SkipRNN, SkipLSTM, SkipGRU, RandomSkipLSTM,
                                 ACT, RepeatRNN, RepeatSkip])
def test_help_lists_every_parameter_and_the_forward(cls):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert 'Initialize internal Module state' not in text and '_forward(' not in text
    assert '$' not in text.split('Methods inherited from torch.nn')[0], 'LaTeX in a docstring reads badly in a terminal'
    init = next(c.__init__ for c in cls.__mro__ if '__init__' in c.__dict__)
    for p in list(__import__('inspect').signature(init).parameters)[1:]:
        assert f'{p} (' in text or f'{p}:' in text or f'**{p}' in text, (cls.__name__, p)
    if cls not in (RNNCell, LSTMCell, GRUCell): assert 'forward(self' in text


def test_help_says_what_sparse_none_does():
    assert 'sparse=None' in SkipLSTM.forward.__doc__ and 'no gradient' in SkipLSTM.forward.__doc__


def test_top_level_imports():
    from adaptive_rnn import fit, run_experiment, sweep, report, SequenceModel, EXPERIMENTS, budget_loss, ponder_cost
    assert callable(fit) and 'adding' in EXPERIMENTS
    assert set(adaptive_rnn.__all__) <= set(dir(adaptive_rnn)) | set(adaptive_rnn._LATER)
    with pytest.raises(AttributeError, match='no_such_name'): adaptive_rnn.no_such_name
