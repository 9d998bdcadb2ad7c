"Layers from the exported package: equality with torch.nn (values and gradients), lengths and PackedSequence, learn_init, dropout, the compiled loop, bad input, CUDA."
import json, warnings
import pytest, torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, PackedSequence
from adaptive_rnn import layers
from adaptive_rnn.layers import RNN, LSTM, GRU, unroll
from adaptive_rnn.skip import SkipLSTM

PAIRS = {'rnn_tanh': (RNN, nn.RNN, {}), 'rnn_relu': (RNN, nn.RNN, dict(nonlinearity='relu')),
         'lstm': (LSTM, nn.LSTM, {}), 'gru': (GRU, nn.GRU, {})}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (torch.cuda.is_available() is False)')


def as_tuple(s): return s if isinstance(s, tuple) else (s,)

def close(a, b, tol=1e-5): torch.testing.assert_close(a, b, atol=tol, rtol=tol)

def pair(name, L=1, bf=True, dtype=torch.float32, device='cpu', **kw):
    ours, theirs, extra = PAIRS[name]
    torch.manual_seed(0)
    ref = theirs(3, 7, L, batch_first=bf, dtype=dtype, device=device, **extra)
    return ours.from_torch(ref, **kw), ref

def graph_has(t, name, depth=4):
    "Whether a node of `t`'s autograd graph, at most `depth` steps back, has `name` in its type name."
    nodes = [t.grad_fn]
    for _ in range(depth):
        if any(name in type(n).__name__ for n in nodes): return True
        nodes = [f for n in nodes for f, _ in n.next_functions if f is not None]
    return False

def grads(m, x, w, state=None):
    y, s = m(x, state)
    if isinstance(y, PackedSequence): y = pad_packed_sequence(y, batch_first=m.batch_first)[0]
    loss = (y * w).sum() + sum((t * t).sum() for t in as_tuple(s))
    return torch.autograd.grad(loss, [x, *m.parameters()])


@pytest.mark.parametrize('name', list(PAIRS))
@pytest.mark.parametrize('L', [1, 2, 3])
@pytest.mark.parametrize('bf', [True, False])
def test_from_torch_equal(name, L, bf):
    m, ref = pair(name, L, bf)
    x = torch.randn(4, 6, 3)
    (y, s), (y_ref, s_ref) = m(x), ref(x)
    close(y, y_ref)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b)
    with torch.no_grad():
        y2, s2 = m(x)
    close(y2, y_ref)


@pytest.mark.parametrize('name', list(PAIRS))
@pytest.mark.parametrize('L', [1, 3])
def test_gradients_equal(name, L):
    m, ref = pair(name, L)
    x = torch.randn(4, 6, 3, requires_grad=True)
    w = torch.randn(4, 6, 7)
    s0 = tuple(torch.randn(L, 4, 7) for _ in as_tuple(ref(x)[1]))
    s0 = s0 if len(s0) > 1 else s0[0]
    for a, b in zip(grads(m, x, w, s0), grads(ref, x, w, s0)): close(a, b)


@pytest.mark.parametrize('name', list(PAIRS))
@pytest.mark.parametrize('bf', [True, False])
def test_lengths_and_packed(name, bf):
    m, ref = pair(name, 2, bf)
    lengths = torch.tensor([6, 2, 4, 1])
    xb = torch.randn(4, 6, 3)
    x = xb if bf else xb.transpose(0, 1)
    packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
    y_ref, s_ref = ref(packed)
    y_ref_pad = pad_packed_sequence(y_ref, batch_first=bf, total_length=6)[0]
    y, s = m(x, lengths=lengths)
    close(y, y_ref_pad)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b)
    yp, sp = m(packed)
    assert isinstance(yp, PackedSequence)
    assert torch.equal(yp.batch_sizes, y_ref.batch_sizes) and torch.equal(yp.sorted_indices, y_ref.sorted_indices)
    close(yp.data, y_ref.data)
    for a, b in zip(as_tuple(sp), as_tuple(s_ref)): close(a, b)
    # gradients through lengths equal torch.nn's through the packed sequence
    xg = x.clone().requires_grad_()
    w = torch.randn_like(y_ref_pad)
    g = torch.autograd.grad((m(xg, lengths=lengths)[0] * w).sum(), [xg, *m.parameters()])
    p = pack_padded_sequence(xg, lengths, batch_first=bf, enforce_sorted=False)
    g_ref = torch.autograd.grad((pad_packed_sequence(ref(p)[0], batch_first=bf, total_length=6)[0] * w).sum(), [xg, *ref.parameters()])
    for a, b in zip(g, g_ref): close(a, b)


@pytest.mark.parametrize('name', list(PAIRS))
def test_no_bias_and_given_state(name):
    ours, theirs, extra = PAIRS[name]
    torch.manual_seed(0)
    ref = theirs(3, 7, 2, bias=False, **extra)
    m = ours.from_torch(ref)
    x = torch.randn(6, 4, 3, requires_grad=True)
    s0 = tuple(torch.randn(2, 4, 7, requires_grad=True) for _ in as_tuple(ref(x)[1]))
    s0 = s0 if len(s0) > 1 else s0[0]
    w = torch.randn(6, 4, 7)
    for a, b in zip(grads(m, x, w, s0), grads(ref, x, w, s0)): close(a, b)
    ga = torch.autograd.grad(sum(t.sum() for t in as_tuple(m(x, s0)[1])), as_tuple(s0))
    gb = torch.autograd.grad(sum(t.sum() for t in as_tuple(ref(x, s0)[1])), as_tuple(s0))
    for a, b in zip(ga, gb): close(a, b)


@pytest.mark.parametrize('name', ['lstm', 'gru'])
@pytest.mark.parametrize('T', [layers._CHUNK - 1, 2 * layers._CHUNK, 2 * layers._CHUNK + 5])
def test_kernel_over_several_blocks(name, T):
    "The kernels work in blocks of `_CHUNK` steps (inference scratch, backward gate gradients): values and gradients across block edges."
    m, ref = pair(name, 2)
    x, w = torch.randn(3, T, 3, requires_grad=True), torch.randn(3, T, 7)
    s0 = tuple(torch.randn(2, 3, 7, requires_grad=True) for _ in as_tuple(ref(x)[1]))
    s0 = s0 if len(s0) > 1 else s0[0]
    for a, b in zip(grads(m, x, w, s0), grads(ref, x, w, s0)): close(a, b, 2e-5)
    with torch.no_grad():
        (y, s), (y_ref, s_ref) = m(x, s0), ref(x, s0)
    close(y, y_ref)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b)


@pytest.mark.parametrize('name', ['lstm', 'gru'])
def test_kernel_with_frozen_weights_or_input(name):
    "Only what requires a gradient gets one: frozen weights with an input that needs a gradient, and the reverse."
    m, ref = pair(name)
    x = torch.randn(2, 40, 3)
    for p in m.parameters(): p.requires_grad_(False)
    for p in ref.parameters(): p.requires_grad_(False)
    xg = x.clone().requires_grad_()
    close(torch.autograd.grad(m(xg)[0].sum(), xg)[0], torch.autograd.grad(ref(xg)[0].sum(), xg)[0])
    for p in list(m.parameters()) + list(ref.parameters()): p.requires_grad_(True)
    g, g_ref = torch.autograd.grad(m(x)[0].sum(), list(m.parameters())), torch.autograd.grad(ref(x)[0].sum(), list(ref.parameters()))
    for a, b in zip(g, g_ref): close(a, b, 2e-5)

@pytest.mark.parametrize('name', ['lstm', 'gru'])
@pytest.mark.parametrize('T', [7, 2 * layers._CHUNK + 5])
def test_kernel_with_lengths(name, T):
    "With `lengths`, the kernels run on the rows still alive (sorted by length): values, final states and gradients as torch.nn's packed layers."
    m, ref = pair(name, 2)
    lengths = torch.tensor([T - 2, 1, T - 2, 3, T // 2])            # unsorted, with ties; the longest ends before T
    x = torch.randn(5, T, 3, requires_grad=True)
    s0 = tuple(torch.randn(2, 5, 7, requires_grad=True) for _ in as_tuple(ref(x)[1]))
    s0 = s0 if len(s0) > 1 else s0[0]
    y, s = m(x, s0, lengths=lengths)
    assert graph_has(y, 'Sequence')                                 # the kernel, not the generic loop
    p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y_ref, s_ref = ref(p, s0)
    y_ref = pad_packed_sequence(y_ref, batch_first=True, total_length=T)[0]
    close(y, y_ref)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b)
    w = torch.randn_like(y)
    loss = lambda y, s: (y * w).sum() + sum((t * t).sum() for t in as_tuple(s))
    inputs = [x, *as_tuple(s0), *m.parameters()]
    g = torch.autograd.grad(loss(y, s), inputs)
    g_ref = torch.autograd.grad(loss(y_ref, s_ref), [x, *as_tuple(s0), *ref.parameters()])
    for a, b in zip(g, g_ref): close(a, b, 2e-5)
    with torch.no_grad():
        y2, s2 = m(x, s0, lengths=lengths)
    close(y2, y_ref)
    for a, b in zip(as_tuple(s2), as_tuple(s_ref)): close(a, b)


def test_sequence_kernel_is_used():
    x = torch.randn(2, 5, 3)
    assert 'LSTMSequence' in type(LSTM(3, 4, batch_first=True)(x)[0].grad_fn).__name__ or 'LSTMSequence' in str(LSTM(3, 4, batch_first=True)(x)[0].grad_fn.next_functions)
    assert 'GRUSequence' in type(GRU(3, 4, batch_first=True)(x)[0].grad_fn).__name__ or 'GRUSequence' in str(GRU(3, 4, batch_first=True)(x)[0].grad_fn.next_functions)
    for cls, name in ((LSTM, 'LSTMSequence'), (GRU, 'GRUSequence')):   # compiled, the layers run their kernels in compiled blocks
        m = cls(3, 4, compiled=True, batch_first=True); m.chunk = 2
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            y = m(x)[0]
        assert name in str(y.grad_fn) or name in str(y.grad_fn.next_functions)


def test_lengths_as_list_and_full_lengths():
    m, ref = pair('lstm')
    x = torch.randn(3, 5, 3)
    close(m(x, lengths=[5, 5, 5])[0], ref(x)[0])
    close(m(x, lengths=[5, 2, 3])[0][1, :2], ref(x[1:2, :2])[0][0])


@pytest.mark.parametrize('cls', [RNN, LSTM, GRU])
def test_learn_init_gets_gradients_and_is_used(cls):
    torch.manual_seed(0)
    m = cls(3, 5, 2, learn_init=True, batch_first=True)
    assert m.init_states.shape == (2, m.cells[0].n_states, 5)
    x = torch.randn(4, 6, 3)
    y0 = m(x)[0].detach()
    with torch.no_grad(): m.init_states.normal_()
    y1, s = m(x)
    assert not torch.allclose(y0, y1)
    (y1.sum() + sum(t.sum() for t in as_tuple(s))).backward()
    assert m.init_states.grad is not None and m.init_states.grad.abs().sum() > 0
    # the trained initial state is what an explicit state with the same values gives
    h0 = tuple(m.init_states[:, k, None].expand(-1, 4, -1).detach() for k in range(m.cells[0].n_states))
    close(m(x, h0 if len(h0) > 1 else h0[0])[0], y1)


def test_learn_init_gradcheck():
    for cls in (LSTM, GRU):
        m = cls(2, 3, learn_init=True, dtype=torch.float64, batch_first=True)
        with torch.no_grad(): m.init_states.normal_()
        x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, *ps: m(x)[0], (x, *m.parameters()))


@pytest.mark.parametrize('name', ['lstm', 'gru', 'rnn_tanh'])
def test_dropout(name):
    m, ref = pair(name, 3)
    m.dropout = 0.5
    x = torch.randn(4, 6, 3)
    m.eval()
    close(m(x)[0], ref(x)[0])
    m.train()
    assert not torch.allclose(m(x)[0], ref(x)[0])
    m1 = type(m)(3, 7, 1, dropout=0.5)
    m1.train()
    torch.manual_seed(1); a = m1(x)[0]
    torch.manual_seed(2); b = m1(x)[0]
    close(a, b)   # one layer: nothing between layers, no dropout (as torch.nn)


@pytest.mark.parametrize('name', ['lstm', 'lstm_blocks', 'gru', 'rnn_tanh'])
def test_compiled_equals_eager(name, monkeypatch):
    if name == 'lstm_blocks':                                      # the compiled blocks without oneDNN's product (torch.mm)
        monkeypatch.setitem(layers._ONEDNN, 'ok', False); name = 'lstm'
    m, ref = pair(name, 2)
    mc = type(m).from_torch(ref, compiled=True)
    mc.chunk = 4
    x = torch.randn(3, 10, 3, requires_grad=True)
    w = torch.randn(3, 10, 7)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        (yc, sc), (y, s) = mc(x), m(x)
        close(yc, y)
        for a, b in zip(as_tuple(sc), as_tuple(s)): close(a, b)
        for a, b in zip(grads(mc, x, w), grads(m, x, w)): close(a, b)
        lengths = torch.tensor([10, 3, 7])
        close(mc(x, lengths=lengths)[0], m(x, lengths=lengths)[0])


def test_compiled_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(layers, '_compiled', {})
    monkeypatch.setattr(layers.torch, 'compile', lambda *a, **k: (_ for _ in ()).throw(RuntimeError('no compiler')))
    x = torch.arange(1., 9.).view(8, 1, 1)
    with pytest.warns(RuntimeWarning, match='compiled=True'):
        ys, (total,) = unroll(lambda x_t, c: (c[0] + x_t, (c[0] + x_t,)), x, (torch.zeros(1, 1),), compiled=True, chunk=4)
    assert total.item() == 36


def test_unroll_reverse_and_tuple_outputs():
    x = torch.arange(1., 6.).view(5, 1, 1)
    ys, (total,) = unroll(lambda x_t, c: ((c[0] + x_t, x_t), (c[0] + x_t,)), x, (torch.zeros(1, 1),), reverse=True)
    assert ys[0].flatten().tolist() == [15., 14., 12., 9., 5.] and ys[1].flatten().tolist() == [1., 2., 3., 4., 5.]


@pytest.mark.parametrize('name', list(PAIRS))
def test_no_grad_float64_unbatched(name):
    m, ref = pair(name, 2, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        (y, s), (y_ref, s_ref) = m(x), ref(x)
    assert not y.requires_grad
    assert y.shape == (6, 7) and as_tuple(s)[0].shape == (2, 7)
    close(y, y_ref, 1e-10)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b, 1e-10)


def test_check_finite():
    m = LSTM(3, 5, batch_first=True)
    x = torch.randn(2, 4, 3); x[1, 2, 0] = float('nan')
    m(x)                                            # off by default: no check
    with pytest.raises(ValueError, match='NaN'): m(x, check_finite=True)
    x_inf = torch.randn(2, 4, 3); x_inf[0, 0, 0] = float('inf')
    with pytest.raises(ValueError, match='infinite'): LSTM(3, 5, check_finite=True, batch_first=True)(x_inf)
    LSTM(3, 5, check_finite=True, batch_first=True)(torch.randn(2, 4, 3))


@pytest.mark.parametrize('bad, exc, msg', [
    (lambda m: m(torch.randn(2, 4)), ValueError, 'features'),
    (lambda m: m(torch.randn(2, 4, 3, 1)), ValueError, 'dims'),
    (lambda m: m(torch.randn(2, 4, 4)), ValueError, 'features'),
    (lambda m: m(torch.randn(2, 4, 3, dtype=torch.float64)), TypeError, 'dtype'),
    (lambda m: m(torch.ones(2, 4, 3, dtype=torch.long)), TypeError, 'floating'),
    (lambda m: m([[1., 2., 3.]]), TypeError, 'torch.Tensor'),
    (lambda m: m(torch.randn(2, 0, 3)), ValueError, 'empty time'),
    (lambda m: m(torch.randn(0, 4, 3)), ValueError, 'empty batch'),
    (lambda m: m(torch.randn(2, 4, 3), lengths=torch.tensor([5, 1])), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), lengths=torch.tensor([0, 1])), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), lengths=torch.tensor([2., 1.])), TypeError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), lengths=torch.tensor([2, 1, 3])), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), lengths=torch.tensor([[2, 1]])), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), lengths='2,1'), TypeError, 'lengths'),
    (lambda m: m(pack_padded_sequence(torch.randn(2, 4, 3), [4, 2], batch_first=True), lengths=[4, 2]), ValueError, 'lengths'),
    (lambda m: m(torch.randn(2, 4, 3), torch.zeros(2, 2, 5)), ValueError, '`state` must have shape (1, 2, 5)'),
    (lambda m: m(torch.randn(2, 4, 3), (torch.zeros(1, 2, 5),) * 2), ValueError, '`state` must be a tensor'),
    (lambda m: m(torch.full((2, 4, 3), float('inf')), check_finite=True), ValueError, 'NaN or infinite'),
])
def test_bad_input(bad, exc, msg):
    with pytest.raises(exc) as e: bad(GRU(3, 5, batch_first=True))
    assert msg in str(e.value)


@pytest.mark.parametrize('kw, exc, msg', [
    (dict(num_layers=0), ValueError, 'num_layers'), (dict(num_layers=1.5), ValueError, 'num_layers'),
    (dict(dropout=1.0), ValueError, 'dropout'), (dict(dropout=-0.1), ValueError, 'dropout'),
    (dict(batch_first=1), TypeError, 'batch_first'), (dict(learn_init='yes'), TypeError, 'learn_init'),
    (dict(check_finite=None), TypeError, 'check_finite'), (dict(compiled=1), TypeError, 'compiled'),
    (dict(hidden_size=0), ValueError, 'hidden_size'),
])
def test_bad_constructor(kw, exc, msg):
    args = dict(input_size=3, hidden_size=5) | kw
    with pytest.raises(exc) as e: LSTM(**args)
    assert msg in str(e.value)


def test_from_torch_bad():
    with pytest.raises(ValueError, match='proj_size'): LSTM.from_torch(nn.LSTM(3, 5, proj_size=2))
    with pytest.raises(TypeError, match='`m`'): LSTM.from_torch(nn.GRU(3, 5))
    with pytest.raises(TypeError, match='`m`'): LSTM.from_torch(nn.Linear(3, 5))


def test_device_mismatch_message():
    m = GRU(3, 5, device='meta', batch_first=True)
    with pytest.raises(ValueError, match='is on cpu'): m(torch.randn(2, 4, 3))


def test_benchmark_quick(tmp_path):
    from adaptive_rnn.bench import run_benchmark
    res = run_benchmark('layers', tmp_path, quick=True)
    saved = json.loads((tmp_path / 'layers.json').read_text())
    assert {'rows', 'settings', 'torch', 'threads', 'device', 'date', 'compile_s'} <= set(saved)
    assert {'cell', 'T', 'mode', 'impl', 'seconds', 'ratio'} <= set(saved['rows'][0])
    assert {r['cell'] for r in saved['rows']} == {'lstm', 'gru'} and saved['threads'] == 2 and res['quick']
    kept = list((tmp_path / 'history').glob('layers-*.json'))                  # every run is also kept
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == saved


@cuda
@pytest.mark.parametrize('name', list(PAIRS))
def test_cuda_matches_cudnn(name):
    m, ref = pair(name, 2, device='cuda')
    x = torch.randn(4, 6, 3, device='cuda', requires_grad=True)
    w = torch.randn(4, 6, 7, device='cuda')
    (y, s), (y_ref, s_ref) = m(x), ref(x)
    close(y, y_ref, 1e-4)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b, 1e-4)
    for a, b in zip(grads(m, x, w), grads(ref, x, w)): close(a, b, 1e-4)


@cuda
def test_cuda_to_device_and_lengths():
    m, ref = pair('lstm', 2)
    m, ref = m.to('cuda'), ref.to('cuda')
    x, lengths = torch.randn(3, 6, 3, device='cuda'), torch.tensor([6, 2, 4])
    y, (h, c) = m(x, lengths=lengths.cuda())
    y_ref, (h_ref, c_ref) = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    close(y, pad_packed_sequence(y_ref, batch_first=True, total_length=6)[0], 1e-4); close(h, h_ref, 1e-4); close(c, c_ref, 1e-4)
    with pytest.raises(ValueError, match='is on'): m(x.cpu())


def test_benchmark_threads(tmp_path, monkeypatch):
    "A benchmark runs on the threads it registered (the ACT benchmark: 1), unless the caller says otherwise; bad counts are errors."
    from adaptive_rnn import bench
    monkeypatch.setattr(bench, 'BENCHMARKS', dict(bench.BENCHMARKS))
    bench.register_benchmark('_one_thread', threads=1)(lambda quick: dict(seen=torch.get_num_threads()))
    res = bench.run_benchmark('_one_thread', tmp_path)
    assert res['threads'] == 1 and res['seen'] == 1
    assert bench.run_benchmark('_one_thread', tmp_path, threads=2)['seen'] == 2
    assert bench.BENCHMARKS['act'].threads == 1 and bench.BENCHMARKS['layers'].threads == 2
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match='threads'): bench.register_benchmark('_bad', threads=bad)


@pytest.mark.parametrize('name', list(PAIRS))
def test_nan_in_padding_reaches_nothing(name):
    "The padding past each row's length is never read: NaN there leaves outputs, states and every gradient finite, as torch.nn's packed layers."
    m, ref = pair(name, 2)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 3, 1])
    x[1, 3:], x[2, 1:] = float('nan'), float('inf')
    xg = x.clone().requires_grad_()
    y, s = m(xg, lengths=lengths)
    y_ref, s_ref = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    close(y, pad_packed_sequence(y_ref, batch_first=True, total_length=6)[0])
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): close(a, b)
    g = torch.autograd.grad(y.sum() + sum(t.sum() for t in as_tuple(s)), [xg, *m.parameters()])
    assert all(t.isfinite().all() for t in g) and (g[0][1, 3:] == 0).all()
    with torch.no_grad(): m(x, lengths=lengths, check_finite=True)                    # padding is not input
    x[0, 2, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'): m(x, lengths=lengths, check_finite=True)


@pytest.mark.parametrize('name', list(PAIRS))
def test_unbatched_state_as_torch_nn(name):
    "A single sequence `(T, I)` takes and returns the state as torch.nn does: `(num_layers, H)`."
    m, ref = pair(name, 2)
    x = torch.randn(7, 3)
    s0 = tuple(torch.randn(2, 7) for _ in as_tuple(ref(x)[1]))
    s0 = s0 if len(s0) > 1 else s0[0]
    (y, s), (y_ref, s_ref) = m(x, s0), ref(x, s0)
    close(y, y_ref)
    for a, b in zip(as_tuple(s), as_tuple(s_ref)): assert a.shape == b.shape; close(a, b)
    bad = tuple(torch.randn(2, 8) for _ in as_tuple(s0))
    with pytest.raises(ValueError, match=r'\(2, 7\)'): m(x, bad if len(bad) > 1 else bad[0])


@pytest.mark.parametrize('name', ['lstm', 'gru'])
def test_second_order_gradients_without_kernels(name):
    "The kernels are first-order only (differentiating twice is an error); `use_kernels = False` gives torch.nn's second-order gradients."
    m, ref = pair(name)
    x = torch.randn(2, 5, 3, requires_grad=True)
    def second(model):
        g, = torch.autograd.grad(model(x)[0].pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), [x, *model.parameters()])
    with pytest.raises(RuntimeError): torch.autograd.grad(m(x)[0].pow(2).sum(), x, create_graph=True)[0].pow(2).sum().backward()
    m.use_kernels = False
    for a, b in zip(second(m), second(ref)): close(a, b, 1e-4)


# The workspace: large kernel buffers kept between calls, never handed out while in use

def test_workspace_reuses_only_free_buffers():
    from adaptive_rnn.layers import Workspace
    ws, like = Workspace(min_bytes=0), torch.empty(0, dtype=torch.float64)
    a = ws.empty(like, 3, 4)
    assert a.dtype == torch.float64 and a.shape == (3, 4)
    ptr = a.data_ptr()
    keep = a.t()                                                   # a view keeps the buffer
    del a
    assert ws.empty(like, 3, 4).data_ptr() != ptr
    del keep
    assert ws.empty(like, 2, 2).data_ptr() == ptr                  # free again; a smaller request fits
    assert ws.empty(torch.empty(0), 3, 4).data_ptr() != ptr        # another dtype: never shared
    small = Workspace()                                            # under min_bytes: not kept
    small.empty(like, 3, 4); assert small.nbytes() == 0


def test_workspace_limit_releases_free_buffers():
    from adaptive_rnn.layers import Workspace
    ws, like = Workspace(limit=0, min_bytes=0), torch.empty(0)
    held = ws.empty(like, 100)
    ws.empty(like, 50)                                             # freed at once, then released past the limit
    assert ws.nbytes() == (100 + 50) * 4
    ws.empty(like, 200)                                            # the free 50 are released, the 200 kept
    assert ws.nbytes() == (100 + 200) * 4
    del held; ws.release(); assert ws.nbytes() == 0


@pytest.mark.parametrize('ours, theirs', [(LSTM, nn.LSTM), (GRU, nn.GRU)])
def test_workspace_graphs_alive_together(ours, theirs):
    "Buffers of 1 MB and more come from the workspace: overlapping graphs, retained graphs and lengths stay exact."
    from adaptive_rnn.layers import workspace
    torch.manual_seed(0)
    ref = theirs(3, 64, 2, batch_first=True, dtype=torch.float64)
    m = ours.from_torch(ref)
    xs = [torch.randn(32, 160, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    lengths = torch.tensor([160, 3, 100, 1] * 8)
    def loss_of(out): y, s = out; return y.square().sum() + sum(t.sum() for t in (s if isinstance(s, tuple) else (s,)))
    outs = [m(x) for x in xs[:2]] + [m(xs[2], lengths=lengths)]
    assert workspace.nbytes() > 0
    first = torch.autograd.grad(loss_of(outs[0]), [xs[0], *m.parameters()], retain_graph=True)
    m(torch.randn(32, 160, 3, dtype=torch.float64))[0].sum().backward()   # another pass while the first graph is retained
    for i, out in enumerate(outs):
        packed = i == 2
        ref_out = ref(nn.utils.rnn.pack_padded_sequence(xs[i], lengths, batch_first=True, enforce_sorted=False)) if packed else ref(xs[i])
        if packed: ref_out = (nn.utils.rnn.pad_packed_sequence(ref_out[0], batch_first=True, total_length=160)[0], ref_out[1])
        got = torch.autograd.grad(loss_of(out), [xs[i], *m.parameters()])
        want = torch.autograd.grad(loss_of(ref_out), [xs[i], *ref.parameters()])
        torch.testing.assert_close(out[0], ref_out[0], rtol=1e-9, atol=1e-10)
        for a, b in zip(got, want): torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        if i == 0:
            for a, b in zip(first, got): assert torch.equal(a, b)


def test_workspace_off_gives_the_same_results():
    from adaptive_rnn.layers import workspace
    torch.manual_seed(1)
    m = LSTM(2, 64, batch_first=True)
    x = torch.randn(16, 300, 2, requires_grad=True)
    def run():
        y, (h, c) = m(x)
        return [y, *torch.autograd.grad(y.sum() + c.sum(), [x, *m.parameters()])]
    on = run()
    workspace.enabled = False
    try: off = run()
    finally: workspace.enabled = True
    for a, b in zip(on, off): assert torch.equal(a, b)


def test_workspace_keeps_at_most_max_buffers():
    from adaptive_rnn.layers import Workspace
    ws, like = Workspace(min_bytes=0, max_buffers=3), torch.empty(0)
    held = [ws.empty(like, 10) for _ in range(5)]                  # a caller holding many outputs
    assert len(ws.entries) == 3 and all(h.shape == (10,) for h in held)
    ptrs = {h.data_ptr() for h in held}; assert len(ptrs) == 5
    del held
    assert ws.empty(like, 10).data_ptr() in {e[0].data_ptr() for e in ws.entries}


@pytest.mark.parametrize('cls', [LSTM, GRU])
def test_onednn_product_equals_torch_mm(cls, monkeypatch):
    "The kernels with oneDNN's packed product (float32 on a CPU) and with torch.mm give the same values and gradients."
    torch.manual_seed(3)
    m = cls(3, 16, 2, batch_first=True)
    x, lengths = torch.randn(5, 12, 3, requires_grad=True), torch.tensor([12, 4, 9, 1, 12])
    def run():
        out = []
        for kw in ({}, dict(lengths=lengths)):
            y, s = m(x, **kw)
            out += [y, *torch.autograd.grad(y.square().sum() + sum(t.sum() for t in as_tuple(s)), [x, *m.parameters()])]
        with torch.no_grad(): out.append(m(x)[0])
        return out
    assert layers._onednn_ready(x) == layers._ONEDNN['ok']
    with_onednn = run()
    monkeypatch.setitem(layers._ONEDNN, 'ok', False)
    for a, b in zip(with_onednn, run()): close(a, b, 1e-5)


def test_packed_product_registry():
    W, x = torch.randn(12, 5), torch.randn(4, 5)
    close(layers._packed_mm(x, W), x @ W.t())                      # not registered: torch.mm
    with layers._packed(W, rows=4):
        assert len(layers._PACKED) == (1 if layers._ONEDNN['ok'] else 0)
        close(layers._packed_mm(x, W), x @ W.t())
        V, v = W.view(5, 12), torch.randn(3, 12)                   # same storage, another shape: not taken for W
        close(layers._packed_mm(v, V), v @ V.t())
        with layers._packed(W, rows=4): pass                       # registered twice: the inner block leaves it
        assert len(layers._PACKED) == (1 if layers._ONEDNN['ok'] else 0)
    assert not layers._PACKED
    with pytest.raises(KeyError):
        with layers._packed(W): raise KeyError('inside')
    assert not layers._PACKED                                      # released on an error too


@pytest.mark.parametrize('cls, theirs, steps', [(LSTM, nn.LSTM, 8), (GRU, nn.GRU, 3 * 8)])   # the LSTM: its backward pass
def test_compiled_blocks_use_the_packed_product(cls, theirs, steps, monkeypatch):
    if not layers._ONEDNN['ok']: pytest.skip('this build has no oneDNN product')
    hits = []
    class Counting(dict):
        def get(self, key, default=None):
            v = super().get(key, default); hits.append(v is not None); return v
    monkeypatch.setattr(layers, '_PACKED', Counting())
    torch.manual_seed(0)
    ref = theirs(3, 7, batch_first=True)
    mc = cls.from_torch(ref, compiled=True); mc.chunk = 4
    x, w = torch.randn(5, 8, 3, requires_grad=True), torch.randn(5, 8, 7)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for a, b in zip(grads(mc, x, w), grads(ref, x, w)): close(a, b)
        with torch.no_grad(): close(mc(x)[0], ref(x)[0])
    assert len(hits) == steps and all(hits)                        # every compiled step's product packed
    assert not layers._PACKED


@pytest.mark.parametrize('I, H', [(3, 7), (9, 4)])                # x_t joins the step's product / the hoisted projection
def test_inference_follows_weight_changes(I, H, monkeypatch):
    torch.manual_seed(0)
    ref = nn.LSTM(I, H, batch_first=True)
    m = LSTM.from_torch(ref)
    x = torch.randn(5, 6, I)
    def same(x):
        (y, (h, c)), (yr, (hr, cr)) = m(x), ref(x)
        close(y, yr); close(h, hr); close(c, cr)
    with torch.no_grad():
        same(x)
        packs = []
        monkeypatch.setattr(layers, '_onednn_pack', lambda *a: packs.append(1))   # (then torch.mm: the results stay)
        same(x)
        assert not packs or I > H                                   # small inputs: the step's product is kept, not made again
        for p, q in zip(m.parameters(), ref.parameters()): p.mul_(1.5); q.mul_(1.5)   # in place, as an optimizer does
        same(x)
        m.cells[0].weight_hh = nn.Parameter(ref.weight_hh_l0 * 0.5); ref.weight_hh_l0.mul_(0.5)   # another tensor
        same(x)
        same(x[:2])                                                 # another batch size


@pytest.mark.parametrize('rows', [8, 300])                           # below and above the rows where oneDNN takes over
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_grad_product(rows, dtype):
    D, Z = torch.randn(rows, 12, dtype=dtype), torch.randn(rows, 5, dtype=dtype)
    dW = torch.ones(12, 5, dtype=dtype)
    out = layers._add_grad_product(dW, D, Z)
    assert out is dW                                                 # accumulated in place
    close(dW, 1 + D.t() @ Z, 1e-4 if dtype == torch.float32 else 1e-10)
    D2 = torch.randn(12, rows, dtype=dtype).t()                      # a transposed (non-contiguous) D
    close(layers._add_grad_product(torch.zeros(12, 5, dtype=dtype), D2, Z), D2.t() @ Z, 1e-4 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize('cls, theirs', [(LSTM, nn.LSTM), (GRU, nn.GRU)])
def test_inference_mode(cls, theirs):
    torch.manual_seed(0)
    ref = theirs(3, 7, batch_first=True)
    x = torch.randn(2, 5, 3)
    with torch.inference_mode():
        yr = ref(x)[0]
        close(cls.from_torch(ref)(x)[0], yr)
        m = cls.from_torch(ref)                                         # parameters made in inference mode: no version counter
        close(m(x)[0], yr); close(m(x)[0], yr)
    m = cls.from_torch(ref)
    with torch.inference_mode(): close(m(x)[0], yr)                   # kept in inference mode, used again outside it
    with torch.no_grad(): close(m(x)[0], yr)


@pytest.mark.parametrize('name', ['RNN', 'LSTM', 'GRU'])
@pytest.mark.parametrize('L, bf', [(1, True), (2, False), (3, True)])
def test_bidirectional_equals_torch_nn(name, L, bf):
    "Outputs, final states and the gradients of the input and of every weight, with and without packed lengths."
    torch.manual_seed(L)
    ref = getattr(nn, name)(3, 5, L, bidirectional=True, batch_first=bf, dtype=torch.float64)
    m = getattr(layers, name).from_torch(ref)
    assert m.bidirectional and len(m.cells) == 2 * L and m.cells[-1].input_size == (10 if L > 1 else 3)
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * L, 4 if bf else 6, 5, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if name == 'LSTM' else h0
    (y, s), (y_ref, s_ref) = m(x, state), ref(x, state)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(s if isinstance(s, tuple) else (s,), s_ref if isinstance(s_ref, tuple) else (s_ref,)): torch.testing.assert_close(a, b)
    w = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad((y * w).sum(), [x, *m.parameters()]), torch.autograd.grad((y_ref * w).sum(), [x, *ref.parameters()])):
        torch.testing.assert_close(a, b)
    B, T = (4, 6) if bf else (6, 4)
    lengths = torch.randint(1, T + 1, (B,))
    packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
    (yp, sp), (yp_ref, sp_ref) = m(packed), ref(packed)
    torch.testing.assert_close(yp.data, yp_ref.data)
    yl, _ = m(x, lengths=lengths)                                 # the same through `lengths`
    torch.testing.assert_close(yl, pad_packed_sequence(yp_ref, batch_first=bf, total_length=T)[0])


def test_bidirectional_learn_init_unbatched_and_errors():
    m = layers.GRU(3, 4, 2, bidirectional=True, learn_init=True, dtype=torch.float64)
    assert m.init_states.shape == (4, 1, 4)
    y, h = m(torch.randn(5, 3, dtype=torch.float64))                # one sequence (T, I)
    assert y.shape == (5, 8) and h.shape == (4, 4)
    with pytest.raises(ValueError, match=r'\(4, 2, 4\)'): m(torch.randn(5, 2, 3, dtype=torch.float64), torch.zeros(2, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match='bidirectional'): layers.LSTM(3, 4, bidirectional='yes')
    with pytest.raises(ValueError, match='bidirectional'): SkipLSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match='proj_size'): layers.LSTM.from_torch(nn.LSTM(3, 4, proj_size=2))
