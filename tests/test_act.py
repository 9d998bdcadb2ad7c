"ACT from the exported package: the thesis' numbers, the row-by-row reference, gradients and bad input."
import math, pytest, torch
from torch import nn
from adaptive_rnn.cells import RNNCell, LSTMCell, GRUCell
from adaptive_rnn.layers import RNN, LSTM, GRU
from adaptive_rnn.act import ACT, ACTOutput, halting_probs, ponder_cost


def constant_halting(m, h):
    with torch.no_grad(): m.halting_unit.weight.zero_(); m.halting_unit.bias.fill_(math.log(h / (1 - h)))
    return m


def naive(m, x):
    "ACT for one sequence `x` `(T, I)`, row by row, with a while loop: mean-field h, N, R per step."
    cell, W_h, b_h = m.cell, m.halting_unit.weight[0], m.halting_unit.bias[0]
    s, out, Ns, Rs = tuple(z[0] for z in cell.init_state(1)), [], [], []
    for x_t in x:
        n, total, hs, states = 0, torch.tensor(0.0, dtype=x.dtype), [], []
        while True:
            n += 1
            s = cell.step(cell.project(torch.cat([x_t.new_tensor([float(n == 1)]), x_t])), s)
            h = torch.sigmoid(W_h @ s[0] + b_h)
            hs.append(h); states.append(s)
            if total + h >= 1 - m.epsilon or n == m.max_ponder: break
            total = total + h
        p = hs[:-1] + [1 - total]
        s = tuple(sum(p_n * s_n[i] for p_n, s_n in zip(p, states)) for i in range(len(s)))
        out.append(s[0]); Ns.append(n); Rs.append(1 - total)
    return torch.stack(out), torch.tensor(Ns), torch.stack(Rs), s


@pytest.mark.parametrize('cell_type', [RNNCell, LSTMCell, GRUCell])
@pytest.mark.parametrize('M, N, rho', [(10, 4, 4.1), (2, 2, 2.7), (4, 4, 4.1)])
def test_constant_halting_gives_thesis_numbers(cell_type, M, N, rho):
    torch.manual_seed(0)
    r = constant_halting(ACT(cell_type(1 + 3, 5), max_ponder=M, batch_first=True), 0.3)(torch.randn(4, 6, 3))
    assert isinstance(r, ACTOutput)
    assert torch.equal(r.steps, torch.full((4, 6), N))
    torch.testing.assert_close(r.ponder.detach(), torch.full((4, 6), rho), atol=1e-5, rtol=0)


def test_hand_computed_two_rows():
    p, N, R = halting_probs(torch.tensor([[0.3, 0.5], [0.3, 0.6], [0.3, 0.2], [0.3, 0.9]]), 0.01)
    assert N.tolist() == [4, 2]
    torch.testing.assert_close(R, torch.tensor([0.1, 0.5]))
    torch.testing.assert_close(p, torch.tensor([[0.3, 0.5], [0.3, 0.5], [0.3, 0.0], [0.1, 0.0]]))


@pytest.mark.parametrize('cell_type', [RNNCell, LSTMCell, GRUCell])
def test_batched_matches_row_by_row(cell_type):
    torch.manual_seed(1)
    m = ACT(cell_type(1 + 3, 8, dtype=torch.float64), max_ponder=6, halting_bias=0.0, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 3.0)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    with torch.no_grad():
        r = m(x)
        for b in range(5):
            y, N, R, last = naive(m, x[b])
            for i, part in enumerate(r.state if isinstance(r.state, tuple) else (r.state,)):   # h, and c (averaged like h)
                torch.testing.assert_close(part[0, b], last[i])
            assert torch.equal(r.steps[b], N)
            torch.testing.assert_close(r.output[b], y)
            torch.testing.assert_close(r.ponder[b], N + R)
    assert len(r.steps.unique()) > 1   # rows and steps halt at different N


def test_max_ponder_one_is_the_plain_layer_on_flagged_input():
    torch.manual_seed(2)
    cell = LSTMCell(1 + 3, 5)
    m, plain = ACT(cell, max_ponder=1, batch_first=True), LSTM(1 + 3, 5, batch_first=True)
    plain.cells[0].load_state_dict(cell.state_dict())
    x = torch.randn(2, 6, 3)
    r = m(x)
    y, (h, c) = plain(torch.cat([torch.ones(2, 6, 1), x], -1))
    torch.testing.assert_close(r.output, y); torch.testing.assert_close(r.state[0], h); torch.testing.assert_close(r.state[1], c)
    assert torch.equal(r.ponder.detach(), torch.full((2, 6), 2.0)) and torch.equal(r.steps, torch.ones(2, 6, dtype=torch.long))


def test_ponder_cost_gradient_reaches_halting_unit():
    torch.manual_seed(3)
    m = ACT(RNNCell(1 + 3, 6), max_ponder=10, halting_bias=-1.0, batch_first=True)
    ponder_cost(m(torch.randn(4, 5, 3)).ponder, 0.01).backward()
    assert m.halting_unit.weight.grad.abs().sum() > 0 and m.halting_unit.bias.grad.abs().item() > 0


def test_ponder_gradient_is_minus_one_before_last_step():
    h = torch.tensor([[0.3, 0.5], [0.3, 0.6], [0.3, 0.2], [0.3, 0.9]], requires_grad=True)
    p, N, R = halting_probs(h)
    (N + R).sum().backward()
    assert torch.equal(h.grad, torch.tensor([[-1., -1.], [-1., 0.], [-1., 0.], [0., 0.]]))


def test_ponder_cost_value_and_reduction():
    ponder = torch.tensor([[2.0, 3.0, 0.0], [4.0, 4.0, 4.0]])
    torch.testing.assert_close(ponder_cost(ponder, 0.1), torch.tensor(0.1 * (5 + 12) / 2))
    torch.testing.assert_close(ponder_cost(ponder[1], 0.1), torch.tensor(1.2))


def test_gradcheck_through_act():
    torch.manual_seed(4)
    m = ACT(GRUCell(1 + 2, 3, dtype=torch.float64), max_ponder=5, halting_bias=-0.5, batch_first=True)
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad(): steps = m(x).steps
    # N(t) is piecewise constant: gradcheck holds where a small perturbation does not change it
    assert torch.autograd.gradcheck(lambda x: (lambda r: (r.output, r.ponder))(m(x)), (x,), eps=1e-7, atol=1e-5)
    with torch.no_grad(): assert torch.equal(m(x + 1e-7).steps, steps)


@pytest.mark.parametrize('k', [2, 3, 8])
def test_check_every_does_not_change_results(k):
    torch.manual_seed(5)
    m = ACT(LSTMCell(1 + 3, 6), max_ponder=8, halting_bias=0.0, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 2.0)
    x = torch.randn(4, 5, 3)
    ref = m(x)
    m.check_every = k
    r = m(x)
    torch.testing.assert_close(r.output, ref.output); torch.testing.assert_close(r.ponder, ref.ponder)
    assert torch.equal(r.steps, ref.steps)


def test_lengths_match_cut_sequences():
    torch.manual_seed(6)
    m = ACT(GRUCell(1 + 3, 5), max_ponder=8, halting_bias=-1.0, batch_first=True)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    with torch.no_grad():
        r = m(x, lengths=lengths)
        for b, L in enumerate(lengths.tolist()):
            rb = m(x[b:b + 1, :L])
            torch.testing.assert_close(r.output[b, :L], rb.output[0]); torch.testing.assert_close(r.state[:, b], rb.state[:, 0])
            assert (r.ponder[b, L:] == 0).all() and (r.steps[b, L:] == 0).all()


def test_unbatched_and_time_major():
    torch.manual_seed(7)
    m = ACT(RNNCell(1 + 3, 5), max_ponder=5, batch_first=True)
    x = torch.randn(1, 4, 3)
    r, r1 = m(x), m(x[0])
    torch.testing.assert_close(r1.output, r.output[0]); assert r1.ponder.shape == (4,) and r1.state.shape == (1, 5)
    m.batch_first = False
    r2 = m(x.transpose(0, 1))
    torch.testing.assert_close(r2.output.transpose(0, 1), r.output); assert r2.ponder.shape == (1, 4)


def test_state_in_and_learn_init():
    torch.manual_seed(8)
    m = ACT(LSTMCell(1 + 3, 5), max_ponder=5, learn_init=True, batch_first=True)
    x = torch.randn(2, 6, 3)
    r = m(x)
    r2 = m(x[:, 3:], r_state := m(x[:, :3]).state)
    torch.testing.assert_close(r2.output, r.output[:, 3:])
    r.output.sum().backward()
    assert m.init_states.grad is not None


def test_state_dict_layout():
    m = ACT(LSTMCell(1 + 3, 5), batch_first=True)
    assert set(m.state_dict()) == {'cells.0.weight_ih', 'cells.0.weight_hh', 'cells.0.bias_ih', 'cells.0.bias_hh',
                                   'halting_unit.weight', 'halting_unit.bias'}
    assert m.halting_unit.bias.item() == 1.0


@pytest.mark.parametrize('kw, msg', [
    (dict(max_ponder=0), 'max_ponder'), (dict(max_ponder=2.0), 'max_ponder'), (dict(max_ponder=True), 'max_ponder'),
    (dict(epsilon=0.0), 'epsilon'), (dict(epsilon=1.0), 'epsilon'), (dict(epsilon=float('nan')), 'epsilon'),
    (dict(epsilon='0.1'), 'epsilon'), (dict(check_every=0), 'check_every'), (dict(halting_bias=float('inf')), 'halting_bias'),
])
def test_bad_constructor_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg): ACT(RNNCell(4, 5), **kw, batch_first=True)


def test_bad_cell():
    with pytest.raises(TypeError, match='cell'): ACT(nn.LSTMCell(4, 5), batch_first=True)
    with pytest.raises(ValueError, match='cell.input_size'): ACT(RNNCell(1, 5), batch_first=True)


@pytest.mark.parametrize('bad, exc, msg', [
    (lambda m: m(torch.randn(2, 3, 4)), ValueError, 'without the flag'),
    (lambda m: m(torch.randn(2, 3, 5)), ValueError, 'features'),
    (lambda m: m(torch.randn(2, 3, 3, dtype=torch.float64)), TypeError, 'dtype'),
    (lambda m: m(torch.ones(2, 3, 3, dtype=torch.long)), TypeError, 'floating'),
    (lambda m: m(torch.randn(3)), ValueError, 'dims'),
    (lambda m: m(torch.randn(2, 0, 3)), ValueError, 'empty time'),
    (lambda m: m(torch.randn(2, 3, 3), lengths=torch.tensor([4, 1])), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 3, 3), torch.zeros(1, 3, 5)), ValueError, 'state'),
])
def test_bad_input(bad, exc, msg):
    with pytest.raises(exc, match=msg): bad(ACT(RNNCell(4, 5), batch_first=True))


@pytest.mark.parametrize('ponder, tau, exc, msg', [
    (torch.ones(2, 3), -0.1, ValueError, 'tau'), (torch.ones(2, 3), float('inf'), ValueError, 'tau'),
    (torch.ones(2, 3), '0.1', ValueError, 'tau'), (torch.ones(2, 3, dtype=torch.long), 0.1, TypeError, 'ponder'),
    (torch.ones(2, 3, 4), 0.1, TypeError, 'ponder'), ([1.0, 2.0], 0.1, TypeError, 'ponder'),
])
def test_bad_ponder_cost(ponder, tau, exc, msg):
    with pytest.raises(exc, match=msg): ponder_cost(ponder, tau)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_matches_cpu():
    torch.manual_seed(9)
    m = ACT(LSTMCell(1 + 3, 6), max_ponder=8, halting_bias=0.0, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 2.0)
    x = torch.randn(4, 5, 3)
    r, rc = m(x), m.cuda()(x.cuda())
    torch.testing.assert_close(rc.output.cpu(), r.output, atol=1e-5, rtol=0); assert torch.equal(rc.steps.cpu(), r.steps)


def test_module_hand_computed_two_rows_halting_at_different_N():
    "Unit 0 = tanh(x) (ignores the flag), unit 1 = tanh(2·flag); halting reads unit 0, so h = 0.3 in row 0, 0.6 in row 1."
    cell = RNNCell(1 + 1, 2)
    with torch.no_grad():
        cell.weight_hh.zero_(); cell.bias_hh.zero_(); cell.bias_ih.zero_()
        cell.weight_ih.copy_(torch.tensor([[0., 1.], [2., 0.]]))
    m = ACT(cell, max_ponder=10, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.copy_(torch.tensor([[1., 0.]])); m.halting_unit.bias.zero_()
    logit = lambda q: math.log(q / (1 - q))
    x = torch.tensor([math.atanh(logit(0.3)), math.atanh(logit(0.6))]).view(2, 1, 1).expand(2, 3, 1)
    with torch.no_grad(): r = m(x)
    assert r.steps.tolist() == [[4, 4, 4], [2, 2, 2]]
    torch.testing.assert_close(r.ponder, torch.tensor([[4.1] * 3, [2.4] * 3]), atol=1e-5, rtol=0)
    torch.testing.assert_close(r.output[..., 0], torch.tanh(x[..., 0]))
    torch.testing.assert_close(r.output[..., 1], torch.tensor([[0.3] * 3, [0.6] * 3]) * math.tanh(2), atol=1e-5, rtol=0)


# The whole-sequence kernel (chapter 05, section on speed) against the ponder loop under autograd

def _run(m, x, kernels, **kw):
    m.use_kernels = kernels
    r = m(x, **kw)
    return r, (r.state if isinstance(r.state, tuple) else (r.state,))


@pytest.mark.parametrize('cell_kw', [dict(cell_type=RNNCell), dict(cell_type=RNNCell, nonlinearity='relu'), dict(cell_type=LSTMCell),
                                     dict(cell_type=GRUCell), dict(cell_type=LSTMCell, bias=False), dict(cell_type=GRUCell, bias=False),
                                     dict(cell_type=RNNCell, bias=False)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('batch_first', [True, False])
def test_kernel_matches_autograd(cell_kw, dtype, batch_first):
    torch.manual_seed(11)
    kw = dict(cell_kw); cell_type = kw.pop('cell_type')
    m = ACT(cell_type(1 + 3, 6, dtype=dtype, **kw), max_ponder=7, halting_bias=0.0, batch_first=batch_first, learn_init=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 2.0); m.init_states.normal_()
    x = torch.randn(*((5, 9) if batch_first else (9, 5)), 3, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([9, 3, 1, 7, 9])
    params = [x, *m.parameters()]
    out = []
    for kernels in (True, False):
        r, state = _run(m, x, kernels, lengths=lengths)
        g = torch.randn_like(r.output, generator=torch.Generator().manual_seed(0))
        loss = (r.output * g).sum() + (r.ponder * torch.arange(9.0, dtype=dtype)).sum() + sum(s.square().sum() for s in state)
        out.append((r, state, torch.autograd.grad(loss, params)))
    (rk, sk, gk), (ra, sa, ga) = out
    tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
    assert torch.equal(rk.steps, ra.steps) and rk.steps.min() < rk.steps.max()
    for a, b in zip((rk.output, rk.ponder, *sk, *gk), (ra.output, ra.ponder, *sa, *ga)): torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize('cell_type', [RNNCell, LSTMCell, GRUCell])
def test_kernel_given_state_unbatched_and_check_every(cell_type):
    torch.manual_seed(12)
    m = ACT(cell_type(1 + 2, 4, dtype=torch.float64), max_ponder=6, halting_bias=0.0, check_every=2, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 2.0)
    state = tuple(torch.randn(1, 4, dtype=torch.float64, requires_grad=True) for _ in range(m.cell.n_states))
    state = state if len(state) > 1 else state[0]
    x = torch.randn(6, 2, dtype=torch.float64)
    results = []
    for kernels in (True, False):
        r, s = _run(m, x, kernels, state=state)
        leaves = state if isinstance(state, tuple) else (state,)
        results.append((r, s, torch.autograd.grad(r.output.sum() + r.ponder.sum() + sum(v.sum() for v in s), leaves)))
    (rk, sk, gk), (ra, sa, ga) = results
    assert rk.output.shape == (6, 4) and rk.ponder.shape == (6,)
    for a, b in zip((rk.output, rk.ponder, *sk, *gk), (ra.output, ra.ponder, *sa, *ga)): torch.testing.assert_close(a, b)


def _count_kernel_calls(monkeypatch):
    import adaptive_rnn.act as act_mod
    calls, apply = [], act_mod._ACTSequence.apply
    monkeypatch.setattr(act_mod._ACTSequence, 'apply', lambda *a: calls.append(1) or apply(*a))
    return calls


def test_kernel_is_used_and_first_order_only(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    m = ACT(LSTMCell(1 + 3, 5), max_ponder=4, batch_first=True)
    x = torch.randn(2, 3, 3)
    r = m(x)
    assert len(calls) == 1
    (g,) = torch.autograd.grad(r.output.sum(), m.halting_unit.weight, create_graph=True)
    with pytest.raises(RuntimeError): torch.autograd.grad(g.sum(), m.cell.weight_hh)
    m.use_kernels = False                                                 # the autograd path differentiates twice
    (g,) = torch.autograd.grad(m(x).output.sum(), m.cell.weight_ih, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), m.cell.weight_hh)
    assert gg.abs().sum() > 0


def test_kernel_without_grad_equals_with_grad():
    torch.manual_seed(13)
    m = ACT(GRUCell(1 + 3, 5), max_ponder=6, halting_bias=0.0, batch_first=True)
    with torch.no_grad(): m.halting_unit.weight.normal_(0, 2.0)
    x = torch.randn(3, 4, 3)
    r = m(x)
    with torch.no_grad(): rn = m(x)
    assert rn.output.grad_fn is None
    torch.testing.assert_close(rn.output, r.output.detach(), atol=0, rtol=0); assert torch.equal(rn.steps, r.steps)


class _MyCell(RNNCell):
    "A user's cell: no kernel adapter, so ACT runs its ponder loop under autograd."


def test_cell_without_kernel_runs_autograd_path(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    torch.manual_seed(14)
    cell = _MyCell(1 + 3, 5)
    m = ACT(cell, max_ponder=5, batch_first=True)
    ref = ACT(RNNCell(1 + 3, 5), max_ponder=5, batch_first=True); ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 4, 3)
    r = m(x)
    assert not calls
    torch.testing.assert_close(r.output, ref(x).output)
    assert len(calls) == 1                                                # the library's RNNCell does use it
