"Cells from the exported package: equivalence with torch.nn, gradients, and bad input."
import pytest, torch
from torch import nn
from adaptive_rnn.cells import RNNCell, set_flush_denormal


@pytest.mark.parametrize('nl', ['tanh', 'relu'])
@pytest.mark.parametrize('bias', [True, False])
def test_rnn_cell_matches_torch(nl, bias):
    torch.manual_seed(0)
    ref, cell = nn.RNNCell(5, 7, bias=bias, nonlinearity=nl), RNNCell(5, 7, bias=bias, nonlinearity=nl)
    cell.load_state_dict(ref.state_dict())
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    torch.testing.assert_close(cell(x, h), ref(x, h), atol=1e-6, rtol=0)
    torch.testing.assert_close(cell(x), ref(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(cell(x[1], h[1]), ref(x[1], h[1]), atol=1e-6, rtol=0)


def test_rnn_cell_state_dict_keys_match_torch():
    assert set(RNNCell(2, 3).state_dict()) == set(nn.RNNCell(2, 3).state_dict())
    assert set(RNNCell(2, 3, bias=False).state_dict()) == set(nn.RNNCell(2, 3, bias=False).state_dict())


def test_rnn_cell_gradcheck():
    cell = RNNCell(3, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cell, (x, h))


@pytest.mark.parametrize('bad, exc, msg', [
    (lambda c: c(torch.randn(2, 5)), ValueError, 'features'),
    (lambda c: c(torch.randn(2, 3, 4)), ValueError, 'dims'),
    (lambda c: c(torch.randn(2, 3, dtype=torch.float64)), TypeError, 'dtype'),
    (lambda c: c(torch.ones(2, 3, dtype=torch.long)), TypeError, 'floating'),
    (lambda c: c([[1., 2., 3.]]), TypeError, 'torch.Tensor'),
    (lambda c: c(torch.randn(2, 3), torch.randn(2, 5)), ValueError, '`state` must have shape (2, 4)'),
    (lambda c: c(torch.randn(2, 3), torch.randn(2, 4, dtype=torch.float64)), TypeError, '`state` has dtype'),
    (lambda c: c(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))), ValueError, 'a tensor'),
])
def test_rnn_cell_bad_input(bad, exc, msg):
    with pytest.raises(exc, match=None) as e: bad(RNNCell(3, 4))
    assert msg in str(e.value)


@pytest.mark.parametrize('kw, msg', [(dict(input_size=0, hidden_size=3), 'input_size'),
                                     (dict(input_size=2, hidden_size=-1), 'hidden_size'),
                                     (dict(input_size=2, hidden_size=2.5), 'hidden_size'),
                                     (dict(input_size=2, hidden_size=3, nonlinearity='gelu'), 'nonlinearity')])
def test_rnn_cell_bad_constructor(kw, msg):
    with pytest.raises(ValueError, match=msg): RNNCell(**kw)


def test_flush_denormal_helper():
    try:
        if set_flush_denormal(True): assert torch.tensor([1e-39]).item() == 0.0
    finally: set_flush_denormal(False)
    assert torch.tensor([1e-39]).item() != 0.0
