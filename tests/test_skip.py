"Skip RNN from the exported package: the equations, N_skip, the plain-layer limit, gradients, the sparse path, bad input."
import math
import pytest, torch
from torch import nn
from adaptive_rnn.layers import RNN, LSTM, GRU, unroll
from adaptive_rnn.skip import (SkipRNN, SkipLSTM, SkipGRU, RandomSkipLSTM, RandomSkipGRU, SkipOutput, budget_loss,
                               target_budget_loss, n_skip, next_u_tilde, binarize_round, count_updates, count_flops,
                               flops_per_update, _plan, _replay)

CLASSES = (SkipRNN, SkipLSTM, SkipGRU)


def constant_gate(m, p):
    with torch.no_grad(): m.update_gate.weight.zero_(); m.update_gate.bias.fill_(math.log(p / (1 - p)))
    return m


def pattern(p, T): return (torch.arange(T) % (int(n_skip(p)) + 1) == 0).float()


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('p', [0.9, 0.3, 0.15, 0.07, 0.04])
@pytest.mark.parametrize('sparse', [False, True])
def test_constant_gate_follows_n_skip(cls, p, sparse):
    torch.manual_seed(0)
    m = constant_gate(cls(2, 5, num_layers=2, batch_first=True), p)
    with torch.no_grad(): res = m(torch.randn(3, 100, 2), sparse=sparse)
    assert torch.equal(res.updates, pattern(p, 100).expand(3, 100))
    assert int(n_skip(p)) == {0.9: 0, 0.3: 1, 0.15: 3, 0.07: 7, 0.04: 12}[p]


def test_tie_updates():
    "Δũ = 0.25 exactly: ũ reaches exactly 0.5 and the step updates (one skipped step, as eq. 4.6)."
    m = SkipGRU(2, 5, batch_first=True)
    with torch.no_grad(): m.update_gate.weight.zero_(); m.update_gate.bias.fill_(math.log(1 / 3))
    assert torch.sigmoid(m.update_gate.bias).item() == 0.25
    for sparse in (False, True):
        with torch.no_grad(): res = m(torch.randn(2, 9, 2), sparse=sparse)
        assert torch.equal(res.updates[0], pattern(0.25, 9))
    assert binarize_round(torch.tensor(0.5)).item() == 1.


def eager_layer(cells, x):
    "The plain stack unrolled step by step with the cells' own `step` (batch-first `x`)."
    x, finals = x.transpose(0, 1), []
    for cell in cells:
        x, s = unroll(lambda xp, s, cell=cell: (lambda new: (new[0], new))(cell.step(xp, s)), cell.project(x), cell.init_state(x.shape[1]))
        finals.append(s)
    return x.transpose(0, 1), finals


@pytest.mark.parametrize('skip_cls,plain_cls,torch_cls', [(SkipRNN, RNN, nn.RNN), (SkipLSTM, LSTM, nn.LSTM), (SkipGRU, GRU, nn.GRU)])
@pytest.mark.parametrize('L', [1, 2])
def test_always_update_is_the_plain_layer(skip_cls, plain_cls, torch_cls, L):
    torch.manual_seed(0)
    ref = torch_cls(3, 7, L, batch_first=True)
    plain, m = plain_cls.from_torch(ref), skip_cls.from_torch(ref)
    with torch.no_grad(): m.update_gate.weight.zero_(); m.update_gate.bias.fill_(30.)
    x = torch.randn(4, 9, 3)
    with torch.no_grad():
        (y_e, s_e), (y, _), (y_ref, _) = eager_layer(m.cells, x), plain(x), ref(x)
        for sparse in (False, True):
            res = m(x, sparse=sparse)
            assert torch.equal(res.updates, torch.ones(4, 9))
            torch.testing.assert_close(res.output, y_e, atol=1e-6, rtol=0)   # one rounding apart: the products' shapes differ, and so may the BLAS kernels
            torch.testing.assert_close(res.output, y, atol=1e-6, rtol=0)
            torch.testing.assert_close(res.output, y_ref, atol=1e-5, rtol=0)
            for l in range(L):
                for k, a in enumerate(res.state if isinstance(res.state, tuple) else (res.state,)):
                    torch.testing.assert_close(a[l], s_e[l][k], atol=1e-6, rtol=0)


def test_first_step_updates_and_result_fields():
    m = SkipLSTM(3, 8, num_layers=2, batch_first=True)
    with torch.no_grad(): m.update_gate.bias.fill_(-5.)
    res = m(torch.randn(4, 10, 3))
    assert isinstance(res, SkipOutput)
    assert res.output.shape == (4, 10, 8) and res.state[0].shape == (2, 4, 8) and res.state[1].shape == (2, 4, 8)
    assert res.updates.shape == res.update_probs.shape == (4, 10) and res.u_tilde.shape == (4,)
    assert torch.equal(res.updates[:, 0], torch.ones(4)) and torch.equal(res.update_probs[:, 0], torch.ones(4))
    assert m.update_gate.in_features == 8 and m.update_gate.out_features == 1 and SkipLSTM(3, 8, batch_first=True).update_gate.bias.item() == 1.
    res_tm = SkipGRU(3, 8, batch_first=False)(torch.randn(10, 4, 3))
    assert res_tm.output.shape == (10, 4, 8) and res_tm.updates.shape == (4, 10)


def test_straight_through_reaches_the_gate():
    torch.manual_seed(0)
    for cls in CLASSES:
        m = cls(3, 8, num_layers=2, batch_first=True)
        with torch.no_grad(): m.update_gate.bias.fill_(-1.)
        res = m(torch.randn(4, 20, 3))
        assert 0 < res.updates.mean() < 1
        budget_loss(res.updates, 1e-2).backward()
        assert m.update_gate.weight.grad.abs().sum() > 0
        assert m.cells[0].weight_hh.grad.abs().sum() > 0


def test_budget_losses():
    u = torch.tensor([[1., 0, 1], [1, 1, 1]])
    assert budget_loss(u, 0.5).item() == pytest.approx(0.5 * 2.5)
    assert budget_loss(u, torch.tensor(0.5)).item() == pytest.approx(1.25)
    assert target_budget_loss(u, 2).item() == pytest.approx(0.5)
    assert target_budget_loss(u, 2, weight=2., norm='l2').item() == pytest.approx(1.)
    for bad in (-1., float('nan'), float('inf')):
        with pytest.raises(ValueError, match='cost_per_sample'): budget_loss(u, bad)
    with pytest.raises(TypeError, match='cost_per_sample'): budget_loss(u, 'a')
    with pytest.raises(ValueError, match='updates'): budget_loss(u[0], 1.)
    with pytest.raises(ValueError, match='updates'): budget_loss(u.unsqueeze(0), 1.)
    with pytest.raises(TypeError, match='updates'): budget_loss([[1.]], 1.)
    with pytest.raises(ValueError, match='target'): target_budget_loss(u, -2)
    with pytest.raises(ValueError, match='norm'): target_budget_loss(u, 2, norm='l0')


def test_gradcheck_float64():
    u = torch.tensor([1., 0., 0.], dtype=torch.float64, requires_grad=True)
    ut = torch.tensor([0.6, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    du = torch.tensor([0.2, 0.15, 0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(next_u_tilde, (u, ut, du))
    for cls in CLASSES:
        m = constant_gate(cls(2, 4, num_layers=2, dtype=torch.float64, batch_first=True), 0.3)
        x = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: m(x).output, (x,))


def test_bad_input():
    m = SkipLSTM(3, 5, batch_first=True)
    x = torch.randn(2, 4, 3)
    for bad in (0., 1.5, -0.1, float('nan')):
        with pytest.raises(ValueError, match='u_tilde'): m(x, u_tilde=bad)
    with pytest.raises(ValueError, match='u_tilde'): m(x, u_tilde=torch.ones(3))
    with pytest.raises(ValueError, match='features'): m(torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match='lengths'): m(x, lengths=torch.tensor([5, 1]))
    with pytest.raises(ValueError, match='state'): m(x, torch.zeros(1, 2, 5))
    with pytest.raises(TypeError): m(x.double())
    with pytest.raises(ValueError, match='binarize'): SkipLSTM(3, 5, binarize='floor', batch_first=True)
    with pytest.raises(ValueError, match='gate_input'): SkipGRU(3, 5, gate_input='c', batch_first=True)
    with pytest.raises(ValueError, match='p_update'): RandomSkipLSTM(3, 5, p_update=1.5, batch_first=True)
    with pytest.raises(ValueError, match='sparse'): m(x, sparse=True)            # gradients needed
    with pytest.raises(TypeError, match='sparse'): m(x, sparse='yes')
    with torch.no_grad(), pytest.raises(ValueError, match='sparse'): SkipGRU(3, 5, binarize='bernoulli', batch_first=True)(x, sparse=True)


def test_gate_input_and_learn_init():
    m = SkipLSTM(3, 5, gate_input='h', learn_init=True, batch_first=True)
    res = m(torch.randn(2, 6, 3))
    (res.output.sum() + budget_loss(res.updates, 1.)).backward()
    assert m.init_states.grad.abs().sum() > 0 and m.update_gate.weight.grad.abs().sum() > 0


def test_chunks_continue_the_sequence():
    torch.manual_seed(0)
    m = SkipLSTM(3, 6, batch_first=True)
    with torch.no_grad(): m.update_gate.bias.fill_(-1.)
    x = torch.randn(3, 16, 3)
    for sparse in (False, True):
        with torch.no_grad():
            whole = m(x, sparse=sparse)
            a = m(x[:, :7], sparse=sparse); b = m(x[:, 7:], a.state, u_tilde=a.u_tilde, sparse=sparse)
        assert torch.equal(torch.cat([a.updates, b.updates], 1), whole.updates)
        torch.testing.assert_close(torch.cat([a.output, b.output], 1), whole.output, atol=1e-6, rtol=0)


def _equal(m, x, **kw):
    torch.manual_seed(1)
    with torch.no_grad(): d = m(x, sparse=False, **kw)
    torch.manual_seed(1)
    with torch.no_grad(): s = m(x, **kw)                                    # sparse=None picks sparse under no_grad
    assert torch.equal(s.updates, d.updates)
    for a, b in zip((s.output, s.update_probs, s.u_tilde), (d.output, d.update_probs, d.u_tilde)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (s.state, d.state))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    return d


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('L', [1, 2])
@pytest.mark.parametrize('trained', [False, True])
def test_sparse_equals_dense(cls, L, trained):
    torch.manual_seed(L)
    m = cls(4, 12, num_layers=L, batch_first=True)
    with torch.no_grad(): m.update_gate.weight.mul_(4); m.update_gate.bias.fill_(-1.)
    if trained:
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        for _ in range(5):
            res = m(torch.randn(8, 30, 4))
            loss = res.output[:, -1].pow(2).mean() + budget_loss(res.updates, 0.05)
            opt.zero_grad(); loss.backward(); opt.step()
    x = torch.randn(16, 50, 4)
    d = _equal(m, x)
    assert 0 < d.updates.mean() < 1
    _equal(m, x, lengths=torch.randint(1, 51, (16,)))
    _equal(m, x, u_tilde=torch.rand(16) * 0.9 + 0.05)
    _equal(m, x, state=d.state, u_tilde=d.u_tilde)
    _equal(m, x[0])                                                          # unbatched
    m.batch_first = False
    _equal(m, x.transpose(0, 1).contiguous(), lengths=torch.randint(1, 51, (16,)))


def test_sparse_equals_dense_random_skip_and_learn_init():
    _equal(RandomSkipLSTM(3, 6, num_layers=2, p_update=0.3, batch_first=True), torch.randn(4, 40, 3), lengths=torch.tensor([40, 5, 22, 39]))
    _equal(RandomSkipGRU(3, 6, batch_first=True), torch.randn(4, 40, 3))
    m = SkipLSTM(3, 6, learn_init=True, batch_first=True)
    with torch.no_grad(): m.init_states.normal_(); m.update_gate.bias.fill_(-1.)
    _equal(m, torch.randn(4, 30, 3))


def test_sparse_no_update_at_all():
    "Rows that never update (ũ_1 small, Δũ tiny): the state is copied throughout."
    m = constant_gate(SkipGRU(2, 4, batch_first=True), 1e-6)
    x = torch.randn(3, 20, 2)
    d = _equal(m, x, u_tilde=0.01)
    assert d.updates.sum() == 0 and torch.equal(d.output, torch.zeros(3, 20, 4))


def test_plan_is_exact():
    torch.manual_seed(0)
    a, d = torch.rand(5000) * 0.6, torch.rand(5000) * 0.3 + 1e-4
    assert torch.equal(_plan(a, d, 784), _replay(a, d, 784).clamp(max=785))
    d = torch.tensor([0.5 / k for k in range(1, 200)])                       # boundary cases
    assert torch.equal(_plan(d, d, 784), _replay(d, d, 784).clamp(max=785))
    d64 = d.double()
    assert torch.equal(_plan(d64, d64, 784), _replay(d64, d64, 784).clamp(max=785))


def test_bernoulli_and_random_skip():
    torch.manual_seed(0)
    m = constant_gate(SkipGRU(2, 5, binarize='bernoulli', batch_first=True), 0.3)
    with torch.no_grad(): res = m(torch.randn(2000, 30, 2))
    assert torch.equal(res.updates[:, 0], torch.ones(2000))
    p_k = torch.tensor([0.3, 0.7 * 0.6, 0.7 * 0.4 * 0.9, 0.7 * 0.4 * 0.1])
    assert abs(res.updates[:, 1:].mean().item() - 1 / (torch.arange(1, 5) * p_k).sum().item()) < 0.01
    m = RandomSkipLSTM(1, 4, batch_first=True)
    assert m.update_gate is None
    with torch.no_grad(): res = m(torch.randn(200, 784, 1))
    assert abs(res.updates.sum(1).mean().item() - 392) < 3
    assert torch.equal(res.update_probs, torch.full((200, 784), 0.5))


def test_counts_and_flops():
    assert flops_per_update(LSTM(1, 110, batch_first=True)) == 48840
    assert f"{count_flops(LSTM(1, 110, batch_first=True), torch.ones(2, 784)):.2e}" == '3.83e+07'
    assert f"{379.38 * flops_per_update(SkipLSTM(1, 110, batch_first=True)):.2e}" == '1.86e+07'
    assert flops_per_update(RandomSkipLSTM(1, 110, batch_first=True)) == 48840
    assert flops_per_update(SkipGRU(3, 4, num_layers=2, batch_first=True)) == 3 * 4 * 7 + 3 * 4 * 8 + 4
    assert count_updates(torch.tensor([[1., 0, 1], [0, 0, 1]])) == 1.5
    with pytest.raises(TypeError, match='model'): count_flops(nn.Linear(2, 2), torch.ones(1, 3))
    with pytest.raises(ValueError, match='reduction'): count_updates(torch.ones(1, 3), 'sum')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_cuda_sparse_equals_dense():
    m = SkipLSTM(3, 8, num_layers=2, batch_first=True).cuda()
    with torch.no_grad(): m.update_gate.bias.fill_(-1.)
    x = torch.randn(8, 30, 3, device='cuda')
    with torch.no_grad(): d, s = m(x, sparse=False), m(x, sparse=True)
    assert torch.equal(d.updates, s.updates)
    torch.testing.assert_close(d.output, s.output, atol=1e-5, rtol=0)


def test_sparse_half_precision_plan():
    d = torch.tensor([0.3, 0.07, 0.25], dtype=torch.bfloat16)
    assert torch.equal(_plan(d, d, 100), _replay(d, d, 100))


from hypothesis import given, settings, strategies as st


@settings(max_examples=25, deadline=None)
@given(cls=st.sampled_from(CLASSES), L=st.integers(1, 2), B=st.integers(1, 6), T=st.integers(1, 30),
       bias=st.floats(-4., 3.), scale=st.floats(0., 5.), seed=st.integers(0, 2**16), use_lengths=st.booleans())
def test_sparse_equals_dense_property(cls, L, B, T, bias, scale, seed, use_lengths):
    torch.manual_seed(seed)
    m = cls(3, 5, num_layers=L, batch_first=True)
    with torch.no_grad(): m.update_gate.weight.mul_(scale); m.update_gate.bias.fill_(bias)
    lengths = torch.randint(1, T + 1, (B,)) if use_lengths else None
    _equal(m, torch.randn(B, T, 3), lengths=lengths, u_tilde=torch.rand(B) * 0.99 + 0.01)


# The Skip sequence kernel (chapter 04) against the masked form it replaces in training

def _kernel_and_masked(m, x, u_tilde=None, state=None):
    "Outputs and gradients (input, initial state, parameters) of `m` through the kernel and through the masked form."
    res = []
    for use in (True, False):
        m.use_kernels = use
        xg = x.clone().requires_grad_()
        st = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        torch.manual_seed(7)
        r = m(xg, None if st is None else (st if len(st) > 1 else st[0]), sparse=False, u_tilde=u_tilde)
        parts = [r.output, *(r.state if isinstance(r.state, tuple) else (r.state,)), r.updates, r.update_probs, r.u_tilde]
        g = torch.Generator().manual_seed(3)
        loss = sum((p * torch.randn(p.shape, generator=g, dtype=p.dtype)).sum() for p in parts)
        wrt = [xg, *(st or ()), *m.parameters()]
        res.append(([p.detach() for p in parts], torch.autograd.grad(loss, wrt, allow_unused=True)))
    del m.use_kernels
    return res


@settings(max_examples=30, deadline=None)
@given(cls=st.sampled_from([SkipRNN, SkipLSTM, SkipGRU]), L=st.integers(1, 3), B=st.integers(1, 6), T=st.integers(1, 25),
       bias=st.floats(-3., 3.), scale=st.floats(0., 5.), seed=st.integers(0, 2**16), binarize=st.sampled_from(['round', 'bernoulli']),
       with_state=st.booleans())
def test_kernel_equals_masked_property(cls, L, B, T, bias, scale, seed, binarize, with_state):
    torch.manual_seed(seed)
    m = cls(3, 5, num_layers=L, binarize=binarize, dtype=torch.float64, batch_first=True)
    with torch.no_grad(): m.update_gate.weight.mul_(scale); m.update_gate.bias.fill_(bias)
    state = tuple(torch.randn(L, B, 5, dtype=torch.float64) for _ in range(m.cells[0].n_states)) if with_state else None
    (pk, gk), (pm, gm) = _kernel_and_masked(m, torch.randn(B, T, 3, dtype=torch.float64), torch.rand(B, dtype=torch.float64) * 0.99 + 0.01, state)
    assert torch.equal(pk[-3], pm[-3])
    for a, b in zip(pk, pm): torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
    for a, b in zip(gk, gm):
        if a is None or b is None: assert (a if b is None else b) is None or (a if b is None else b).abs().max() == 0
        else: torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_training_runs_the_kernel_and_float32_agrees(monkeypatch):
    from adaptive_rnn import skip
    calls = []
    apply = skip._SkipSequence.apply
    monkeypatch.setattr(skip._SkipSequence, 'apply', lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    m = SkipLSTM(2, 16, learn_init=True, init='glorot', batch_first=True)
    x = torch.randn(32, 40, 2)
    (pk, gk), (pm, gm) = _kernel_and_masked(m, x)
    assert len(calls) == 1                                     # the kernel ran once, the masked form once
    assert torch.equal(pk[-3], pm[-3])
    for a, b in zip(gk, gm):
        if a is not None: torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_masked_form_runs_where_the_kernel_does_not():
    assert not SkipLSTM(3, 4, batch_first=True)._kernel_fits(lengths=torch.tensor([2, 1]))
    assert not SkipLSTM(3, 4, num_layers=2, dropout=0.2, batch_first=True).train()._kernel_fits()
    assert not SkipRNN(3, 4, nonlinearity='relu', batch_first=True)._kernel_fits() and not SkipGRU(3, 4, bias=False, batch_first=True)._kernel_fits()
    m = SkipGRU(3, 4, batch_first=True); m.use_kernels = False
    assert not m._kernel_fits()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_cuda_kernel_equals_cpu():
    torch.manual_seed(0)
    m = SkipLSTM(3, 8, num_layers=2, dtype=torch.float64, batch_first=True)
    with torch.no_grad(): m.update_gate.bias.fill_(0.)
    x = torch.randn(4, 20, 3, dtype=torch.float64)
    (pc, gc), _ = _kernel_and_masked(m, x)
    (pg, gg), _ = _kernel_and_masked(m.cuda(), x.cuda())
    for a, b in zip(pc + list(gc), pg + list(gg)):
        if a is not None: torch.testing.assert_close(a, b.cpu())
