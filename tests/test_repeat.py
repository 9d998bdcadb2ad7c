"Repeat RNN and Repeat + Skip from the exported package: the data transform, equality with the plain layer, bad input."
import pytest, torch
from torch import nn
from adaptive_rnn.cells import RNNCell, LSTMCell, GRUCell
from adaptive_rnn.layers import RNN, LSTM, GRU
from adaptive_rnn.repeat import repeat_inputs, RepeatRNN, RepeatOutput, RepeatSkip
from adaptive_rnn.skip import SkipRNN, SkipLSTM, SkipGRU, budget_loss


@pytest.mark.parametrize('rho', [1, 2, 3, 7])
def test_repeat_inputs_shape_and_flag(rho):
    x = torch.randn(2, 5, 4)
    xr = repeat_inputs(x, rho)
    assert xr.shape == (2, 5 * rho, 5)
    for b in range(2):
        assert torch.nonzero(xr[b, :, 0]).flatten().tolist() == list(range(0, 5 * rho, rho))
    assert torch.equal(xr[:, :, 1:], x.repeat_interleave(rho, 1))
    assert torch.equal(repeat_inputs(x.transpose(0, 1), rho, batch_first=False).transpose(0, 1), xr)


@pytest.mark.parametrize('cell_type, layer_type', [(RNNCell, RNN), (LSTMCell, LSTM), (GRUCell, GRU)])
@pytest.mark.parametrize('rho', [1, 2, 4])
def test_repeat_rnn_is_plain_layer_on_repeated_inputs(cell_type, layer_type, rho):
    torch.manual_seed(0)
    cell, layer = cell_type(1 + 3, 6, dtype=torch.float64), layer_type(1 + 3, 6, dtype=torch.float64, batch_first=True)
    layer.cells[0].load_state_dict(cell.state_dict())
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    r = RepeatRNN(cell, rho, batch_first=True)(x)
    assert isinstance(r, RepeatOutput) and r.output.shape == (3, 5, 6)
    y, s = layer(repeat_inputs(x, rho))
    torch.testing.assert_close(r.output, y[:, rho - 1::rho])
    for a, b in zip(r.state if isinstance(r.state, tuple) else (r.state,), s if isinstance(s, tuple) else (s,)):
        torch.testing.assert_close(a, b)
    assert torch.equal(r.ponder, torch.full((3, 5), float(rho))) and torch.equal(r.steps, torch.full((3, 5), rho))


def test_repeats_one_is_plain_layer_on_flagged_input():
    torch.manual_seed(1)
    cell, layer = GRUCell(1 + 3, 6), GRU(1 + 3, 6, batch_first=True)
    layer.cells[0].load_state_dict(cell.state_dict())
    x = torch.randn(2, 4, 3)
    y, h = layer(torch.cat([torch.ones(2, 4, 1), x], -1))
    r = RepeatRNN(cell, 1, batch_first=True)(x)
    torch.testing.assert_close(r.output, y); torch.testing.assert_close(r.state, h)


def test_gradients_match_the_naive_form():
    torch.manual_seed(2)
    cell = LSTMCell(1 + 3, 5)
    layer = LSTM(1 + 3, 5, batch_first=True); layer.cells[0] = cell   # the same parameters
    x = torch.randn(2, 4, 3)
    RepeatRNN(cell, 3, batch_first=True)(x).output.sum().backward()
    g = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    layer(repeat_inputs(x, 3))[0][:, 2::3].sum().backward()
    for a, p in zip(g, cell.parameters()): torch.testing.assert_close(a, p.grad)


def test_lengths_state_and_unbatched():
    torch.manual_seed(3)
    m = RepeatRNN(LSTMCell(1 + 3, 5), 3, learn_init=True, batch_first=True)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    r = m(x, lengths=lengths)
    for b, L in enumerate(lengths.tolist()):
        rb = m(x[b, :L])
        torch.testing.assert_close(r.output[b, :L], rb.output); torch.testing.assert_close(r.state[0][:, b], rb.state[0])
        assert (r.output[b, L:] == 0).all() and (r.ponder[b, L:] == 0).all()
    r2 = m(x[:, 3:], m(x[:, :3]).state)
    torch.testing.assert_close(r2.output, m(x).output[:, 3:])


@pytest.mark.parametrize('bad', [0, -1, 1.0, True, '2', None])
def test_bad_repeats(bad):
    with pytest.raises(ValueError, match='repeats'): repeat_inputs(torch.randn(1, 2, 3), bad)
    with pytest.raises(ValueError, match='repeats'): RepeatRNN(RNNCell(4, 5), bad, batch_first=True)
    with pytest.raises(ValueError, match='repeats'): RepeatSkip(SkipGRU(4, 5, batch_first=True), bad)


def test_bad_inputs():
    with pytest.raises(TypeError, match='`x`'): repeat_inputs([[1.0]], 2)
    with pytest.raises(TypeError, match='floating'): repeat_inputs(torch.ones(1, 2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='3 dims'): repeat_inputs(torch.randn(2, 3), 2)
    with pytest.raises(TypeError, match='cell'): RepeatRNN(nn.GRUCell(4, 5), 2, batch_first=True)
    with pytest.raises(ValueError, match='cell.input_size'): RepeatRNN(RNNCell(1, 5), 2, batch_first=True)
    with pytest.raises(ValueError, match='features'): RepeatRNN(RNNCell(4, 5), 2, batch_first=True)(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match='dtype'): RepeatRNN(RNNCell(4, 5), 2, batch_first=True)(torch.randn(2, 3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match='skip'): RepeatSkip(GRU(4, 5, batch_first=True), 2)
    with pytest.raises(ValueError, match='features'): RepeatSkip(SkipGRU(4, 5, batch_first=True), 2)(torch.randn(2, 3, 4))


@pytest.mark.parametrize('skip_type, cell_type', [(SkipRNN, RNNCell), (SkipLSTM, LSTMCell), (SkipGRU, GRUCell)])
def test_repeat_skip_always_updating_is_repeat_rnn(skip_type, cell_type):
    torch.manual_seed(4)
    skip = skip_type(1 + 3, 6, batch_first=True)
    with torch.no_grad(): skip.update_gate.weight.zero_(); skip.update_gate.bias.fill_(20.)
    x = torch.randn(2, 5, 3)
    r, ref = RepeatSkip(skip, 3)(x), RepeatRNN(skip.cells[0], 3, batch_first=True)(x)
    torch.testing.assert_close(r.output, ref.output)
    assert r.updates.shape == (2, 15) and torch.equal(r.ponder.detach(), torch.full((2, 5), 3.))


def test_repeat_skip_skips_and_trains():
    torch.manual_seed(5)
    skip = SkipGRU(1 + 3, 6, batch_first=True)
    with torch.no_grad(): skip.update_gate.weight.zero_(); skip.update_gate.bias.fill_(-1.)
    r = RepeatSkip(skip, 4)(torch.randn(3, 5, 3))
    assert r.output.shape == (3, 5, 6) and (r.ponder < 4).any()
    torch.testing.assert_close(r.ponder, r.updates.view(3, 5, 4).sum(-1))
    (r.output.sum() + budget_loss(r.updates, 0.01)).backward()
    assert skip.update_gate.bias.grad.abs().item() > 0


def test_repeat_skip_reads_last_read():
    torch.manual_seed(6)
    skip = SkipLSTM(1 + 3, 6, batch_first=True)
    x = torch.randn(2, 5, 3)
    r = RepeatSkip(skip, 3)(x)
    full = skip(repeat_inputs(x, 3))
    torch.testing.assert_close(r.output, full.output[:, 2::3]); torch.testing.assert_close(r.updates, full.updates)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_matches_cpu():
    torch.manual_seed(7)
    m = RepeatRNN(LSTMCell(1 + 3, 6), 3, batch_first=True)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(m.cuda()(x.cuda()).output.cpu(), m.cpu()(x), atol=1e-5, rtol=0)


def test_repeat_skip_time_major_equals_batch_first():
    "A time-major Skip layer (torch.nn's default layout) works inside RepeatSkip: the same numbers, transposed."
    torch.manual_seed(5)
    bf = SkipLSTM(1 + 3, 6, batch_first=True)
    tm = SkipLSTM(1 + 3, 6); tm.load_state_dict(bf.state_dict())
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    a, b = RepeatSkip(bf, 2)(x, lengths=lengths), RepeatSkip(tm, 2)(x.transpose(0, 1), lengths=lengths)
    torch.testing.assert_close(b.output.transpose(0, 1), a.output)
    assert torch.equal(a.updates, b.updates) and torch.equal(a.ponder, b.ponder) and a.output.shape == (3, 5, 6)


def test_repeat_skip_lengths_error_names_the_lengths_given():
    with pytest.raises(ValueError, match=r'in \[1, 5\], got \[6, 2\]'):
        RepeatSkip(SkipGRU(1 + 3, 4, batch_first=True), 3)(torch.randn(2, 5, 3), lengths=[6, 2])


def test_repeat_skip_models_train_through_the_registry(tmp_path):
    "repeat2_skip_rnn and friends: RepeatSkip around a Skip layer, λ as their knob, cell applications counted per read."
    from adaptive_rnn.experiments import run_experiment, build_model, settings, MODELS
    assert {'repeat2_skip_rnn', 'repeat3_skip_rnn', 'repeat2_skip_lstm', 'repeat3_skip_lstm'} <= set(MODELS)
    m = build_model('parity', 'repeat3_skip_rnn', settings('parity', quick=True), 8)
    assert isinstance(m.core, RepeatSkip) and m.core.repeats == 3 and isinstance(m.core.skip, SkipRNN)
    r = run_experiment('parity', 'repeat2_skip_rnn', cost_per_sample=1e-2, quick=True, out=tmp_path / 'run', progress=False, steps=20)
    assert 1 <= r.final['updates'] <= 2 and r.final['repetitions'] == r.final['updates']   # one input, at most two reads
    assert r.final['flops'] == r.final['updates'] * sum(p.numel() for n, p in m.core.named_parameters() if 'weight' in n)
